package domain

import (
	"net/mail"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Limits of the signup fields.
const (
	MaxEmailLength       = 254 // RFC 5321 path limit
	maxEmailLocalLength  = 64
	MaxCompanyLength     = 200
	MaxContactNameLength = 100
)

// SignupDetails is what a customer gives at signup.
type SignupDetails struct {
	Email       string
	Company     string
	ContactName string
	Country     string
	Plan        Plan
}

// Normalize returns the details with surrounding spaces trimmed, the email
// lower-cased (one customer per email, whatever its case) and the country
// upper-cased.
func (d SignupDetails) Normalize() SignupDetails {
	d.Email = NormalizeEmail(d.Email)
	d.Company = strings.TrimSpace(d.Company)
	d.ContactName = strings.TrimSpace(d.ContactName)
	d.Country = strings.ToUpper(strings.TrimSpace(d.Country))
	d.Plan = Plan(strings.TrimSpace(string(d.Plan)))
	return d
}

// NormalizeEmail is the form an email is stored and reserved in.
// Invalid UTF-8 is left as it is, for Validate to reject: lower-casing would
// quietly turn it into U+FFFD.
func NormalizeEmail(email string) string {
	email = strings.TrimSpace(email)
	if !utf8.ValidString(email) {
		return email
	}
	return strings.ToLower(email)
}

// Validate checks every field and returns a *ValidationError listing all
// invalid ones, with JSON pointers named as in the signup request body.
func (d SignupDetails) Validate() error {
	var errs fieldErrors
	validateEmail(&errs, d.Email)
	validateText(&errs, "/company", d.Company, MaxCompanyLength)
	validateText(&errs, "/contact_name", d.ContactName, MaxContactNameLength)
	switch {
	case d.Country == "":
		errs.add("/country", "is required")
	case !IsCountryCode(d.Country):
		errs.add("/country", "must be an ISO 3166-1 alpha-2 code, got %q", truncate(d.Country, 8))
	}
	switch {
	case d.Plan == "":
		errs.add("/plan", "is required")
	case !d.Plan.Valid():
		errs.add("/plan", "must be one of %v", Plans())
	}
	return errs.err()
}

func validateEmail(errs *fieldErrors, email string) {
	switch {
	case email == "":
		errs.add("/email", "is required")
		return
	case !utf8.ValidString(email):
		errs.add("/email", "must be valid UTF-8")
		return
	case len(email) > MaxEmailLength:
		errs.add("/email", "must be at most %d bytes", MaxEmailLength)
		return
	}
	addr, err := mail.ParseAddress(email)
	if err != nil || addr.Name != "" || addr.Address != email {
		errs.add("/email", "must be a plain address like name@example.com")
		return
	}
	at := strings.LastIndexByte(email, '@')
	local, host := email[:at], email[at+1:]
	if len(local) > maxEmailLocalLength {
		errs.add("/email", "local part must be at most %d bytes", maxEmailLocalLength)
		return
	}
	if !strings.Contains(host, ".") || strings.HasPrefix(host, ".") || strings.HasSuffix(host, ".") || strings.HasPrefix(host, "[") {
		errs.add("/email", "must have a domain name like example.com")
	}
}

func validateText(errs *fieldErrors, pointer, s string, max int) {
	switch {
	case strings.TrimSpace(s) == "":
		errs.add(pointer, "is required")
	case !utf8.ValidString(s):
		errs.add(pointer, "must be valid UTF-8")
	case utf8.RuneCountInString(s) > max:
		errs.add(pointer, "must be at most %d characters", max)
	case strings.ContainsFunc(s, unicode.IsControl):
		errs.add(pointer, "must not contain control characters")
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
