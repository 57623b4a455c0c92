package restriction

// Stage is the point of the SMTP dialogue a check is about.
type Stage int

// The stages, named as Postfix's policy delegation protocol names them
// (protocol_state).
const (
	StageUnspecified Stage = iota
	Connect
	HELO
	Mail
	Rcpt
	Data
	EndOfData
	ETRN
	VRFY
)

func (s Stage) String() string {
	switch s {
	case Connect:
		return "CONNECT"
	case HELO:
		return "HELO"
	case Mail:
		return "MAIL"
	case Rcpt:
		return "RCPT"
	case Data:
		return "DATA"
	case EndOfData:
		return "END-OF-MESSAGE"
	case ETRN:
		return "ETRN"
	case VRFY:
		return "VRFY"
	}
	return "UNSPECIFIED"
}

// ListKind names one of the top-level restriction lists. Its value is the
// main.cf parameter name.
type ListKind string

// The restriction lists, in the order Postfix evaluates them at RCPT TO
// with smtpd_delay_reject = yes.
const (
	ClientList    ListKind = "smtpd_client_restrictions"
	HELOList      ListKind = "smtpd_helo_restrictions"
	SenderList    ListKind = "smtpd_sender_restrictions"
	RelayList     ListKind = "smtpd_relay_restrictions"
	RecipientList ListKind = "smtpd_recipient_restrictions"
	DataList      ListKind = "smtpd_data_restrictions"
	EndOfDataList ListKind = "smtpd_end_of_data_restrictions"
	ETRNList      ListKind = "smtpd_etrn_restrictions"
)

// allLists returns every top-level list.
func allLists() []ListKind {
	return []ListKind{ClientList, HELOList, SenderList, RelayList, RecipientList, DataList, EndOfDataList, ETRNList}
}

// replyClass is what Postfix calls the reply class of a list: the words
// after "<name>: " in a reject reply (SMTPD_NAME_* in smtpd_check_int.h).
func (k ListKind) replyClass() string {
	switch k {
	case ClientList:
		return "Client host"
	case HELOList:
		return "Helo command"
	case SenderList:
		return "Sender address"
	case RelayList, RecipientList:
		return "Recipient address"
	case DataList:
		return "Data command"
	case EndOfDataList:
		return "End-of-data"
	case ETRNList:
		return "Etrn command"
	}
	return ""
}

// replyName is what Postfix calls the reply name: the thing a reject reply
// names between "<" and ">" (the arguments of generic_checks() in
// smtpd_check.c).
func (k ListKind) replyName(f *Facts) string {
	switch k {
	case ClientList:
		return f.NameAddr()
	case HELOList:
		return f.HELO
	case SenderList:
		return f.Sender
	case RelayList, RecipientList:
		return f.Recipient
	case DataList:
		return "DATA"
	case EndOfDataList:
		return "END-OF-MESSAGE"
	case ETRNList:
		return f.ETRNDomain
	}
	return ""
}

// defaultAccess is the access restriction a bare "type:table" element
// means in this list (the def_acl argument of generic_checks()); the DATA
// lists have none.
func (k ListKind) defaultAccess() string {
	switch k {
	case ClientList:
		return "check_client_access"
	case HELOList:
		return "check_helo_access"
	case SenderList:
		return "check_sender_access"
	case RelayList, RecipientList:
		return "check_recipient_access"
	case ETRNList:
		return "check_etrn_access"
	}
	return ""
}
