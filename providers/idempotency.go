package providers

import "strconv"

// IdempotencyKey derives the key of a provider call from the customer, the
// step ("billing", "billing.close", "tenant", ...) and the attempt group.
// The same inputs give the same key, so every retry of a call — in process,
// after a redelivery, after a crash — hits the provider's idempotency
// record and never causes a second effect. A process manager starts a new
// group only when it means a new effect (an operator retrying a step whose
// previous attempt failed permanently, whose stored response would
// otherwise be replayed).
func IdempotencyKey(customerID, step string, group int) string {
	return "onboard:" + customerID + ":" + step + ":" + strconv.Itoa(group)
}
