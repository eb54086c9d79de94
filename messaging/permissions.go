package messaging

import (
	"fmt"
	"slices"
	"strings"
)

// Role names what a NATS user may do; each process (or tool) connects as
// the user of its role. RolePermissions is the one place that says what a
// role may publish and subscribe to; ServerConfig renders it for
// docker-compose's NATS and for the embedded server alike.
type Role string

// The roles. Anything a role is not allowed is refused by the server: a
// publish is dropped with a permissions violation, a request gets no
// answer.
const (
	// RoleRelay publishes events and seals, and creates and updates the
	// streams. It is the only role that publishes to event subjects.
	RoleRelay Role = "relay"
	// RoleWorker consumes and acks through its durable consumers on the
	// events stream, and publishes dead letters.
	RoleWorker Role = "worker"
	// RoleProjector consumes and acks through its durable consumers on the
	// events stream. (The projectors read the event store today; the role
	// is for one fed by NATS.)
	RoleProjector Role = "projector"
	// RoleOperator re-drives dead letters (`onboard deadletters redrive`).
	RoleOperator Role = "operator"
	// RoleAuditor reads the seals (`onboard replay verify --nats`).
	RoleAuditor Role = "auditor"
	// RoleAdmin may do anything in the account, deleting streams and
	// consumers included: for maintenance with the nats CLI and for tests
	// that break NATS on purpose. No onboard process connects as admin.
	RoleAdmin Role = "admin"
)

// Roles returns every role, in the order ServerConfig lists their users.
func Roles() []Role {
	return []Role{RoleRelay, RoleWorker, RoleProjector, RoleOperator, RoleAuditor, RoleAdmin}
}

// Permissions are the subjects a user may publish and subscribe to; nil
// lists mean no restriction (admin).
type Permissions struct {
	Publish, Subscribe []string
}

// RolePermissions returns what role may do on the streams of cfg (and the
// seals' stream under its default names). Unknown roles may do nothing but
// receive replies.
func RolePermissions(role Role, cfg StreamConfig) Permissions {
	cfg.setDefaults()
	api := func(op, stream string) string { return "$JS.API." + op + "." + stream }
	// Replies (JetStream's answers, publish acks, pulled messages) come to
	// the client's inbox.
	p := Permissions{Subscribe: []string{"_INBOX.>"}, Publish: []string{"$JS.API.INFO"}}
	consume := func() {
		p.Publish = append(p.Publish,
			api("STREAM.INFO", cfg.Name),
			api("CONSUMER.CREATE", cfg.Name)+".>", api("CONSUMER.DURABLE.CREATE", cfg.Name)+".>",
			api("CONSUMER.INFO", cfg.Name)+".>", api("CONSUMER.MSG.NEXT", cfg.Name)+".>",
			"$JS.ACK."+cfg.Name+".>")
	}
	switch role {
	case RoleAdmin:
		return Permissions{}
	case RoleRelay:
		for _, s := range []string{cfg.Name, cfg.DeadLetterName, DefaultSealStreamName} {
			p.Publish = append(p.Publish, api("STREAM.CREATE", s), api("STREAM.UPDATE", s), api("STREAM.INFO", s),
				api("STREAM.MSG.GET", s), api("DIRECT.GET", s), api("DIRECT.GET", s)+".>")
		}
		// The consumers' floors (relay_floor.go) list the events' stream's
		// consumers.
		p.Publish = append(p.Publish, api("CONSUMER.LIST", cfg.Name), cfg.SubjectPrefix+".>", DefaultSealSubject)
	case RoleWorker:
		consume()
		// The router records a dead letter on its subject; it looks the
		// dead-letter stream up when it starts.
		p.Publish = append(p.Publish, api("STREAM.INFO", cfg.DeadLetterName), cfg.DeadLetterPrefix+".>")
	case RoleProjector:
		consume()
	case RoleOperator:
		p.Publish = append(p.Publish, api("STREAM.INFO", cfg.Name), cfg.RedrivePrefix+".>")
	case RoleAuditor:
		s := DefaultSealStreamName
		p.Publish = append(p.Publish, api("STREAM.INFO", s), api("STREAM.MSG.GET", s), api("DIRECT.GET", s), api("DIRECT.GET", s)+".>")
	}
	return p
}

// merge returns the union of the permissions of roles: what one process
// running several roles on one connection needs.
func merge(cfg StreamConfig, roles ...Role) Permissions {
	var out Permissions
	for _, r := range roles {
		p := RolePermissions(r, cfg)
		if p.Publish == nil {
			return Permissions{}
		}
		out.Publish = append(out.Publish, p.Publish...)
		out.Subscribe = append(out.Subscribe, p.Subscribe...)
	}
	slices.Sort(out.Publish)
	slices.Sort(out.Subscribe)
	out.Publish = slices.Compact(out.Publish)
	out.Subscribe = slices.Compact(out.Subscribe)
	return out
}

// ServerUser is a user of ServerConfig: a name, its password (a literal,
// or a $VARIABLE that the server resolves from its environment) and the
// roles whose permissions it has.
type ServerUser struct {
	Name, Password string
	Roles          []Role
}

// RoleUsers returns one user per role, named after it, with the password
// $NATS_<ROLE>_PASSWORD: the users of docker-compose's NATS.
func RoleUsers() []ServerUser {
	var users []ServerUser
	for _, r := range Roles() {
		users = append(users, ServerUser{Name: string(r), Password: "$NATS_" + strings.ToUpper(string(r)) + "_PASSWORD", Roles: []Role{r}})
	}
	return users
}

// ServerConfig renders the accounts part of a nats-server configuration:
// one account, ONBOARD, with JetStream, holding users with their roles'
// permissions on the streams of cfg. There is no anonymous user, so a
// client without credentials is refused. docker-compose's NATS reads it
// (deploy/nats/onboard.conf, which a test holds equal to this), and the
// embedded server parses it too.
func ServerConfig(cfg StreamConfig, users []ServerUser) string {
	var b strings.Builder
	b.WriteString("# The accounts and users of onboard's NATS, one user per role with that\n" +
		"# role's permissions (messaging.RolePermissions). Rendered by\n" +
		"# messaging.ServerConfig: do not edit; `go test ./messaging -run TestServerConfigFile -update`.\n" +
		"accounts {\n  ONBOARD {\n    jetstream: enabled\n    users: [\n")
	for _, u := range users {
		password := u.Password
		if !strings.HasPrefix(password, "$") {
			password = quote(password)
		}
		fmt.Fprintf(&b, "      {\n        user: %s\n        password: %s\n", quote(u.Name), password)
		p := merge(cfg, u.Roles...)
		if p.Publish != nil {
			fmt.Fprintf(&b, "        permissions: {\n          publish: {allow: %s}\n          subscribe: {allow: %s}\n        }\n",
				quoteList(p.Publish), quoteList(p.Subscribe))
		}
		b.WriteString("      }\n")
	}
	b.WriteString("    ]\n  }\n}\n")
	return b.String()
}

func quote(s string) string { return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"` }

func quoteList(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = quote(s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}
