package httpapi

import "context"

// Role is what an API key may do.
type Role string

// The roles of API keys.
const (
	// RoleClient signs customers up and reads the customers it signed up.
	RoleClient Role = "client"
	// RoleOperator runs operator commands and reads everything.
	RoleOperator Role = "operator"
	// RoleProvider delivers provider webhooks (authenticated by HMAC).
	RoleProvider Role = "provider"
)

// Principal is the authenticated caller of a request.
type Principal struct {
	// Name identifies the key's owner; it is recorded as the actor of the
	// events a request causes ("client:shop", "operator:ada").
	Name string
	Role Role
}

// Actor is the principal as recorded in event metadata.
func (p Principal) Actor() string { return string(p.Role) + ":" + p.Name }

type principalKey struct{}

// withPrincipal returns ctx carrying p.
func withPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// principalFrom returns the request's principal, if it was authenticated.
func principalFrom(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}
