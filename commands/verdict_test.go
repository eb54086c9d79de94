package commands_test

import (
	"context"
	"strings"
	"testing"

	"github.com/onboard/onboard/commands"
	"github.com/onboard/onboard/domain"
)

// TestRecordVerdict: an approval of the recorded check verifies the
// customer and requests billing in the same append; a verdict that is no
// longer news (the same one again, or one on another check) is recorded as
// ignored, so that its delivery can be acknowledged.
func TestRecordVerdict(t *testing.T) {
	cmds, _ := newCommands(t)
	ctx := context.Background()
	res, err := cmds.SignUp(ctx, details, commands.Meta{})
	if err != nil {
		t.Fatal(err)
	}
	id := res.CustomerID
	if _, err := cmds.Execute(ctx, id, nil, commands.Meta{}, func(c *domain.Customer) error { return c.RecordCheckStarted(1, "chk_1") }); err != nil {
		t.Fatal(err)
	}
	approved, err := cmds.RecordVerdict(ctx, id, commands.Verdict{CheckID: "chk_1", Approved: true}, commands.Meta{Actor: "provider:kyc"})
	if err != nil {
		t.Fatal(err)
	}
	if len(approved.Events) != 2 || approved.Events[1] != (domain.StepRequested{Step: domain.StepBilling, Attempt: 1, AttemptGroup: 1, IdempotencyKey: id.String() + ":billing:1"}) {
		t.Fatalf("approval raised %+v, want the verification's success and billing's request", approved.Events)
	}
	for _, v := range []commands.Verdict{{CheckID: "chk_1", Approved: true}, {CheckID: "chk_other", Reason: "late"}} {
		again, err := cmds.RecordVerdict(ctx, id, v, commands.Meta{Actor: "provider:kyc"})
		if err != nil {
			t.Fatalf("%+v: %v", v, err)
		}
		ignored, ok := again.Events[0].(domain.ResultIgnored)
		if len(again.Events) != 1 || !ok || ignored.Step != domain.StepVerification || !strings.Contains(ignored.Reason, v.CheckID) {
			t.Fatalf("%+v raised %+v, want one ResultIgnored naming the check", v, again.Events)
		}
	}
}
