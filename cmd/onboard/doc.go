// Command onboard is the one binary of the onboarding pipeline. Its
// subcommands (dev, serve, migrate, sim, replay, bench) only wire the
// concrete types of the other packages together.
//
// It may import every package of the module; it is the only package that may
// import httpapi and messaging.
package main
