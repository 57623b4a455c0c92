// Package restriction is smtpgate's Postfix smtpd access-control engine:
// it compiles the restriction lists of main.cf (smtpd_client_restrictions,
// smtpd_helo_restrictions, smtpd_sender_restrictions,
// smtpd_relay_restrictions, smtpd_recipient_restrictions,
// smtpd_data_restrictions, smtpd_end_of_data_restrictions,
// smtpd_etrn_restrictions and the restriction classes) and evaluates them
// over the facts of one stage of an SMTP session, the way Postfix's
// smtpd_check.c does: left to right until a restriction permits, rejects
// or defers; the end of a list permits that list only; smtpd_delay_reject
// moves the client, HELO and sender lists to RCPT TO. See
// https://www.postfix.org/SMTPD_ACCESS_README.html and postconf(5).
//
// The configuration is trusted; the Facts are whatever an SMTP client said
// (through the edge) and are not. Every restriction is a value implementing
// Restriction, built by name from the list at Compile time, so access
// tables, warn_if_reject, DNS checks and the rest add restrictions without
// touching the evaluation order. An Engine talks to nobody; restrictions
// that need the DNS or Redis will receive them at Compile time.
package restriction
