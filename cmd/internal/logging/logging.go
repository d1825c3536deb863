// Package logging gives every binary the logging flags of Kubernetes' own components, from
// k8s.io/component-base/logs: --logging-format (text, or json for log pipelines), -v and
// --vmodule.
package logging

import (
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/spf13/pflag"
	logsapi "k8s.io/component-base/logs/api/v1"
	_ "k8s.io/component-base/logs/json/register" // --logging-format=json
)

// Options are the parsed logging flags.
type Options struct{ c *logsapi.LoggingConfiguration }

// AddGoFlags registers the logging flags on a standard FlagSet.
func AddGoFlags(fs *flag.FlagSet) *Options {
	o := &Options{c: logsapi.NewLoggingConfiguration()}
	logsapi.AddGoFlags(o.c, fs)
	return o
}

// AddFlags registers the logging flags on a pflag FlagSet.
func AddFlags(fs *pflag.FlagSet) *Options {
	o := &Options{c: logsapi.NewLoggingConfiguration()}
	logsapi.AddFlags(o.c, fs)
	return o
}

// Apply makes the parsed flags take effect (once per process), logging to stderr.
func (o *Options) Apply() error { return o.applyTo(os.Stderr) }

func (o *Options) validate() error {
	if errs := logsapi.Validate(o.c, nil, nil); len(errs) > 0 {
		return fmt.Errorf("logging flags (--logging-format, -v, --vmodule): %w", errs.ToAggregate())
	}
	return nil
}

func (o *Options) applyTo(w io.Writer) error {
	if err := o.validate(); err != nil {
		return err
	}
	return logsapi.ValidateAndApplyWithOptions(o.c, &logsapi.LoggingOptions{ErrorStream: w, InfoStream: w}, nil)
}
