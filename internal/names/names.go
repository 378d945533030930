// Package names holds the one rule for a level's name, which becomes a
// cgroup and a directory name and is checked wherever a level's record or
// run directory is read.
package names

import "fmt"

// Valid checks a level name, [A-Za-z0-9][A-Za-z0-9_.-]{0,63}. (By hand,
// not with regexp: compiling one costs milliseconds at every start.)
func Valid(name string) error {
	ok := len(name) >= 1 && len(name) <= 64
	for i := 0; ok && i < len(name); i++ {
		c := name[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		ok = alnum || i > 0 && (c == '_' || c == '.' || c == '-')
	}
	if !ok {
		return fmt.Errorf("invalid name %q (use 1 to 64 letters, digits, '_', '.' or '-', starting with a letter or digit)", name)
	}
	return nil
}
