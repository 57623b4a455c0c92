package policy

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/smtpgate/smtpgate/pkg/logtest"
	"github.com/smtpgate/smtpgate/pkg/maincf"
	policyv1 "github.com/smtpgate/smtpgate/proto/smtpgate/policy/v1"
)

// TestExplainOverGRPC asks the real server why a sender is refused, as
// grpcurl would, and checks the trace: lists, restrictions, lookup keys in
// Postfix's order, and the same trace in the refusal's log line.
func TestExplainOverGRPC(t *testing.T) {
	dir := t.TempDir()
	access := filepath.Join(dir, "sender_access")
	if err := os.WriteFile(access, []byte("# spammers\nspammer.example REJECT go away\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := maincf.Parse("main.cf", strings.NewReader(mainCF+
		"smtpd_sender_restrictions = permit_mynetworks, check_sender_access texthash:"+access+"\n"))
	if err != nil {
		t.Fatal(err)
	}
	logs := &logtest.Buffer{}
	client := serveWith(t, serverSetup{Main: maincf.New(Catalogue(), f, dir), Config: Config{Logger: slog.New(slog.NewTextHandler(logs, nil))}})

	req := rcptRequest("", "203.0.113.5", "john@example.org")
	req.Transaction.Sender = "bob@mail.spammer.example"
	resp, err := client.Explain(context.Background(), &policyv1.ExplainRequest{Check: req})
	if err != nil {
		t.Fatalf("Explain: %v", err)
	}
	rule := "check_sender_access texthash:" + access
	want := &policyv1.ExplainResponse{
		Verdict: &policyv1.Verdict{Action: policyv1.Action_ACTION_REJECT, Code: 554, EnhancedCode: "5.7.1",
			Text: "<bob@mail.spammer.example>: Sender address rejected: go away", Restriction: rule, List: "smtpd_sender_restrictions"},
		ClientNames: &policyv1.ClientNames{Name: "unknown", ReverseName: "unknown", NameStatus: policyv1.NameStatus_NAME_STATUS_PERMANENT, ReverseNameStatus: policyv1.NameStatus_NAME_STATUS_PERMANENT},
		Lists:       []string{"smtpd_client_restrictions", "smtpd_helo_restrictions", "smtpd_sender_restrictions", "smtpd_relay_restrictions", "smtpd_recipient_restrictions"},
		Steps: []*policyv1.Step{
			{List: "smtpd_sender_restrictions", Restriction: "permit_mynetworks", Result: "DUNNO"},
			{List: "smtpd_sender_restrictions", Restriction: rule, Result: "REFUSE",
				Reply: "554 5.7.1 <bob@mail.spammer.example>: Sender address rejected: go away",
				Lookups: []*policyv1.Lookup{
					{Table: "texthash:" + access, Key: "bob@mail.spammer.example"},
					{Table: "texthash:" + access, Key: "mail.spammer.example"},
					{Table: "texthash:" + access, Key: "spammer.example", Found: true, Value: "REJECT go away"},
				}},
		},
	}
	if diff := cmp.Diff(want, resp, protocmp.Transform()); diff != "" {
		t.Errorf("Explain mismatch (-want +got):\n%s", diff)
	}
	// Check gives the same verdict and logs the trace.
	cresp, err := client.Check(context.Background(), req)
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	if diff := cmp.Diff(want.Verdict, cresp.GetVerdict(), protocmp.Transform()); diff != "" {
		t.Errorf("Check mismatch (-want +got):\n%s", diff)
	}
	if got := logs.String(); !strings.Contains(got, "[spammer.example=REJECT go away] -> REFUSE") {
		t.Errorf("the refusal's log line lacks the trace:\n%s", got)
	}
}
