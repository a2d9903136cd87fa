// Package config holds the typed arguments of Lockstep's scheduler plugins:
// their Go types, defaults and validation. The scheduler decodes the raw
// pluginConfig args of a KubeSchedulerConfiguration into these types strictly,
// so a misspelt or nonsensical field stops the scheduler with a message naming
// the field instead of being ignored.
// +kubebuilder:object:generate=true
package config
