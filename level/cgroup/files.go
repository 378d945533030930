package cgroup

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// WriteFile writes one value to a cgroup file, naming the file and the
// value when the kernel refuses.
func WriteFile(dir, file, value string) error {
	p := filepath.Join(dir, file)
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return fmt.Errorf("write %q to %s: %w", value, p, unwrapPath(err))
	}
	_, err = f.WriteString(value)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %q to %s: %w", value, p, unwrapPath(err))
	}
	return nil
}

// ReadFile reads a cgroup file, trimmed.
func ReadFile(dir, file string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dir, file))
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

// unwrapPath drops the *PathError layer: the message already names the path.
func unwrapPath(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}

// Fields reads a space-separated list file such as cgroup.controllers.
func Fields(dir, file string) ([]string, error) {
	s, err := ReadFile(dir, file)
	if err != nil {
		return nil, err
	}
	return strings.Fields(s), nil
}

// KeyValue reads one key of a flat keyed file such as cgroup.events.
func KeyValue(dir, file, key string) (string, error) {
	s, err := ReadFile(dir, file)
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(s, "\n") {
		if k, v, ok := strings.Cut(line, " "); ok && k == key {
			return v, nil
		}
	}
	return "", fmt.Errorf("%s has no %q", filepath.Join(dir, file), key)
}
