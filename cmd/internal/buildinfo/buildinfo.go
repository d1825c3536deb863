// Package buildinfo gives every binary its --version flag. What it prints is what the binary's
// openstack_autoscaler_build_info metric carries (client_golang's version collector): both read
// github.com/prometheus/common/version, whose Version `make images` sets with
// -ldflags "-X github.com/prometheus/common/version.Version=<tag>".
package buildinfo

import (
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/prometheus/common/version"
	"github.com/spf13/pflag"
)

const usage = "print the version (as the build_info metric has it) and exit"

// VersionFlag is --version.
type VersionFlag struct {
	program string
	set     bool
}

// AddGoFlag registers --version on a standard FlagSet; program names the binary in the output.
func AddGoFlag(fs *flag.FlagSet, program string) *VersionFlag {
	v := &VersionFlag{program: program}
	fs.BoolVar(&v.set, "version", false, usage)
	return v
}

// AddFlag registers --version on a pflag FlagSet; program names the binary in the output.
func AddFlag(fs *pflag.FlagSet, program string) *VersionFlag {
	v := &VersionFlag{program: program}
	fs.BoolVar(&v.set, "version", false, usage)
	return v
}

// ExitIfSet prints the version and exits 0 when --version was given: call it right after
// parsing the flags, before anything else runs.
func (v *VersionFlag) ExitIfSet() {
	if v.printTo(os.Stdout) {
		os.Exit(0)
	}
}

func (v *VersionFlag) printTo(w io.Writer) bool {
	if v.set {
		_, _ = fmt.Fprintln(w, version.Print(v.program))
	}
	return v.set
}
