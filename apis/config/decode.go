package config

import (
	"bytes"
	"encoding/json"
	"fmt"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/yaml"
)

// DecodeGangArgs turns the raw pluginConfig args into defaulted, validated
// GangArgs. Unknown fields are errors: a typo must not silently fall back to
// a default.
func DecodeGangArgs(obj runtime.Object) (*GangArgs, error) {
	args := &GangArgs{}
	if err := decodeStrict(obj, args); err != nil {
		return nil, fmt.Errorf("decoding Gang plugin args: %w", err)
	}
	SetDefaultsGangArgs(args)
	if err := ValidateGangArgs(field.NewPath("args"), args); err != nil {
		return nil, fmt.Errorf("invalid Gang plugin args: %w", err)
	}
	return args, nil
}

func decodeStrict(obj runtime.Object, into any) error {
	if obj == nil {
		return nil
	}
	var raw []byte
	switch o := obj.(type) {
	case *runtime.Unknown:
		raw = o.Raw
		if o.ContentType == runtime.ContentTypeYAML {
			j, err := yaml.YAMLToJSON(raw)
			if err != nil {
				return err
			}
			raw = j
		}
	case *GangArgs:
		if g, ok := into.(*GangArgs); ok {
			*g = *o.DeepCopy()
			return nil
		}
		return fmt.Errorf("cannot decode %T into %T", obj, into)
	default:
		return fmt.Errorf("want args of type runtime.Unknown, got %T", obj)
	}
	if len(bytes.TrimSpace(raw)) == 0 {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	return dec.Decode(into)
}
