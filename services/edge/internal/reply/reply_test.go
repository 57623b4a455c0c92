package reply

import (
	"errors"
	"fmt"
	"testing"

	authv1 "github.com/smtpgate/smtpgate/proto/smtpgate/auth/v1"
	policyv1 "github.com/smtpgate/smtpgate/proto/smtpgate/policy/v1"
)

func TestFromVerdict(t *testing.T) {
	R, D := policyv1.Action_ACTION_REJECT, policyv1.Action_ACTION_DEFER
	for _, tc := range []struct {
		name   string
		v      *policyv1.Verdict
		want   string
		permit bool
		bad    bool
		close  bool
	}{
		{name: "permit", v: &policyv1.Verdict{Action: policyv1.Action_ACTION_PERMIT}, permit: true},
		// DISCARD claims success: never an error reply, whatever else
		// the verdict carries.
		{name: "discard", v: &policyv1.Verdict{Action: policyv1.Action_ACTION_DISCARD}, permit: true},
		{name: "discard with text", v: &policyv1.Verdict{Action: policyv1.Action_ACTION_DISCARD, Code: 554, EnhancedCode: "5.7.1", Text: "spam", Warnings: []string{"discard: <x>: Sender address triggers DISCARD action"}}, permit: true},
		{name: "unknown action", v: &policyv1.Verdict{Action: policyv1.Action(99), Code: 250}, bad: true},
		{name: "relay denied", v: &policyv1.Verdict{Action: R, Code: 554, EnhancedCode: "5.7.1", Text: "<lisa@example.com>: Relay access denied"}, want: "554 5.7.1 <lisa@example.com>: Relay access denied\r\n"},
		{name: "defer", v: &policyv1.Verdict{Action: D, Code: 450, EnhancedCode: "4.7.1", Text: "<x>: Recipient address rejected: Try again"}, want: "450 4.7.1 <x>: Recipient address rejected: Try again\r\n"},
		{name: "temporary never carries 5.x.x", v: &policyv1.Verdict{Action: D, Code: 451, EnhancedCode: "5.7.1", Text: "t"}, want: "451 4.7.1 t\r\n"},
		{name: "missing enhanced code", v: &policyv1.Verdict{Action: R, Code: 550, Text: "t"}, want: "550 5.7.1 t\r\n"},
		{name: "421 disconnects", v: &policyv1.Verdict{Action: D, Code: 421, EnhancedCode: "4.7.0", Text: "bye"}, want: "421 4.7.0 bye\r\n", close: true},
		{name: "disconnect flag", v: &policyv1.Verdict{Action: R, Code: 554, EnhancedCode: "5.7.1", Text: "t", Disconnect: true}, want: "554 5.7.1 t\r\n", close: true},
		{name: "control characters", v: &policyv1.Verdict{Action: R, Code: 554, EnhancedCode: "5.7.1", Text: "a\r\nb"}, want: "554 5.7.1 a??b\r\n"},
		{name: "unspecified", v: &policyv1.Verdict{}, bad: true},
		{name: "nil", v: nil, bad: true},
		{name: "reject with 4xx", v: &policyv1.Verdict{Action: R, Code: 450}, bad: true},
		{name: "defer with 5xx", v: &policyv1.Verdict{Action: D, Code: 554}, bad: true},
		{name: "reject with 250", v: &policyv1.Verdict{Action: R, Code: 250}, bad: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, permit, err := FromVerdict(tc.v)
			if tc.bad {
				if !errors.Is(err, ErrNoVerdict) {
					t.Fatalf("FromVerdict = %v, %v, %v; want ErrNoVerdict", r, permit, err)
				}
				return
			}
			if err != nil || permit != tc.permit {
				t.Fatalf("FromVerdict = %v, %v, %v", r, permit, err)
			}
			if !permit && (r.String() != tc.want || r.Close != tc.close) {
				t.Errorf("reply %q close=%v, want %q close=%v", r.String(), r.Close, tc.want, tc.close)
			}
		})
	}
}

func TestDiscards(t *testing.T) {
	for a, want := range map[policyv1.Action]bool{
		policyv1.Action_ACTION_DISCARD: true, policyv1.Action_ACTION_PERMIT: false,
		policyv1.Action_ACTION_REJECT: false, policyv1.Action_ACTION_DEFER: false,
		policyv1.Action_ACTION_UNSPECIFIED: false, policyv1.Action(99): false,
	} {
		if got := Discards(&policyv1.Verdict{Action: a}); got != want {
			t.Errorf("Discards(%v) = %v, want %v", a, got, want)
		}
	}
	if Discards(nil) {
		t.Error("Discards(nil) = true")
	}
}

func TestFailClosedReplies(t *testing.T) {
	for _, tc := range []struct {
		name string
		r    Reply
		want string
	}{
		{"policy failed", PolicyUnavailable("<lisa@example.com>"), "451 4.3.0 <lisa@example.com>: Temporary lookup failure"},
		{"auth failed", FromAuthResult(authv1.Result_RESULT_TEMPORARY_FAILURE), "454 4.7.0 Temporary authentication failure"},
		{"auth unknown result", FromAuthResult(authv1.Result(99)), "454 4.7.0 Temporary authentication failure"},
		{"wrong password", FromAuthResult(authv1.Result_RESULT_FAILURE), "535 5.7.8 Error: authentication failed: authentication failure"},
		{"auth ok", FromAuthResult(authv1.Result_RESULT_SUCCESS), "235 2.7.0 Authentication successful"},
		{"encryption required", FromAuthResult(authv1.Result_RESULT_ENCRYPTION_REQUIRED), "538 5.7.11 Encryption required for requested authentication mechanism"},
		{"next hop down", FromHandoff(NextHopUnavailable(errors.New("refused"))), "451 4.4.1 Error: next hop not available, try again later"},
		{"next hop lost", FromHandoff(NextHopFailed(errors.New("eof"))), "451 4.4.2 Error: connection to next hop lost, try again later"},
		{"next hop 5xx passed through", FromHandoff(NextHopRefused(550, "5.1.1", "<x>: User unknown")), "550 5.1.1 <x>: User unknown"},
		{"next hop 4xx with 5.x.x", FromHandoff(NextHopRefused(452, "5.2.2", "full")), "452 4.2.2 full"},
		{"next hop odd code", FromHandoff(NextHopRefused(299, "", "?")), "451 4.4.1 Error: next hop not available, try again later"},
		{"other hand-off error", FromHandoff(errors.New("disk")), "451 4.3.0 Error: queue file write error"},
	} {
		if got := tc.r.Text(); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
		if tc.r.Temporary() && tc.r.Enhanced != "" && tc.r.Enhanced[0] != '4' {
			t.Errorf("%s: temporary reply with enhanced code %s", tc.name, tc.r.Enhanced)
		}
	}
}

func TestMultiline(t *testing.T) {
	r := Reply{Code: 250, Lines: []string{"mail.example.org", "PIPELINING", "8BITMIME"}}
	if got := r.String(); got != "250-mail.example.org\r\n250-PIPELINING\r\n250 8BITMIME\r\n" {
		t.Errorf("multi-line = %q", got)
	}
}

// TestLimitReplies: the replies of the per-session limits and of the
// memory budget, in Postfix's words.
func TestLimitReplies(t *testing.T) {
	for _, tc := range []struct {
		name  string
		r     Reply
		want  string
		close bool
	}{
		{"smtpd_recipient_limit", TooManyRcpts, "452 4.5.3 Error: too many recipients", false},
		{"message_size_limit", TooBig, "552 5.3.4 Message size exceeds fixed limit", false},
		{"line_length_limit (Postfix 3.12)", CommandTooLong("mail.example.org"), "500 5.5.2 mail.example.org Error: command too long", false},
		{"smtpgate_memory_budget (queue_minfree's reply)", InsufficientStorage, "452 4.3.1 Insufficient system storage", false},
		{"spool write failed", WriteError, "451 4.3.0 Error: queue file write error", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.r.Text(); got != tc.want {
				t.Errorf("%q, want %q", got, tc.want)
			}
			if tc.r.Close != tc.close {
				t.Errorf("Close = %v, want %v", tc.r.Close, tc.close)
			}
			if tc.r.SoftBounced().Code != tc.r.Code && tc.r.Temporary() {
				t.Errorf("soft_bounce changed a temporary reply: %v", tc.r.SoftBounced())
			}
		})
	}
}

func TestIsRefusal(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{NextHopRefused(550, "5.7.1", "no"), true},
		{NeedsSMTPUTF8("<a@b>", 553), true},
		{fmt.Errorf("wrapped: %w", NeedsSMTPUTF8("", 550)), true},
		{NextHopUnavailable(errors.New("dial")), false},
		{NextHopFailed(errors.New("reset")), false},
		{errors.New("other"), false},
		{nil, false},
	} {
		if got := IsRefusal(tc.err); got != tc.want {
			t.Errorf("IsRefusal(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}
