package main

import (
	"fmt"
	"os"
	"strings"
)

// secretEnv returns the secret in the environment variable name or, when
// name_FILE is set instead, the content of the file it names (as Docker
// and Kubernetes mount secrets), without its trailing line break. It
// returns "" when neither is set, and an error when both are: which one
// wins would be a guess. Every secret of the configuration is read
// through it; its errors name the variable and the file, never the
// secret.
func secretEnv(name string) (string, error) {
	v, path := os.Getenv(name), os.Getenv(name+"_FILE")
	switch {
	case path == "":
		return v, nil
	case v != "":
		return "", fmt.Errorf("%s and %s_FILE are both set: set one", name, name)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("%s_FILE: %w", name, err)
	}
	s := strings.TrimRight(string(b), "\r\n")
	if s == "" {
		return "", fmt.Errorf("%s_FILE: %s is empty", name, path)
	}
	return s, nil
}
