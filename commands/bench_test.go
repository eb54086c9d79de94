package commands_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/onboard/onboard/commands"
	"github.com/onboard/onboard/domain"
)

// BenchmarkSignUp appends signups, with personal data in plain text and
// encrypted under a data key made in the same command: what encryption costs
// the command path (the key's statement included).
func BenchmarkSignUp(b *testing.B) {
	for _, encrypted := range []bool{false, true} {
		name := "plain"
		if encrypted {
			name = "encrypted"
		}
		b.Run(name, func(b *testing.B) {
			cmds := newBenchCommands(b, encrypted)
			ctx := context.Background()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				d := details
				d.Email = fmt.Sprintf("bench-%d@example.com", i)
				if _, err := cmds.SignUp(ctx, d, commands.Meta{Actor: "client:bench"}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkStepCommand runs a command whose events carry no personal data
// on a customer whose signup was encrypted: encryption costs it nothing.
func BenchmarkStepCommand(b *testing.B) {
	cmds := newBenchCommands(b, true)
	ctx := context.Background()
	res, err := cmds.SignUp(ctx, details, commands.Meta{})
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := cmds.Execute(ctx, res.CustomerID, nil, commands.Meta{}, func(c *domain.Customer) error {
			return c.IgnoreResult(domain.StepVerification, "bench", "duplicate")
		}); err != nil {
			b.Fatal(err)
		}
	}
}
