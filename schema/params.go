package schema

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Convert parses a textual value (from --param or a YAML default) into the
// param's type and checks its enum.
func (p *Param) Convert(s string) (any, error) {
	switch p.Type {
	case Int:
		v, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%q is not an integer", s)
		}
		return v, nil
	case Bool:
		v, err := strconv.ParseBool(strings.TrimSpace(s))
		if err != nil {
			return nil, fmt.Errorf("%q is not true or false", s)
		}
		return v, nil
	case Duration:
		v, err := time.ParseDuration(strings.TrimSpace(s))
		if err != nil {
			return nil, fmt.Errorf("%q is not a duration such as 30s or 10m", s)
		}
		return v, nil
	case StringList:
		if strings.TrimSpace(s) == "" {
			return []string{}, nil
		}
		parts := strings.Split(s, ",")
		for i := range parts {
			parts[i] = strings.TrimSpace(parts[i])
		}
		return parts, nil
	}
	if len(p.Enum) > 0 && !contains(p.Enum, s) {
		return nil, fmt.Errorf("%q is not one of %s%s", s, strings.Join(p.Enum, ", "), Suggest(s, p.Enum))
	}
	return s, nil
}

// BindParams converts command-line values (name=value) for a plan, fills in
// defaults and reports every unknown, missing or malformed param at once.
func (p *Plan) BindParams(given map[string]string) (map[string]any, error) {
	out := map[string]any{}
	var problems []string
	declared := map[string]*Param{}
	names := []string{}
	for _, d := range p.Params {
		declared[d.Name] = d
		names = append(names, d.Name)
	}
	unknown := []string{}
	for k := range given {
		if declared[k] == nil {
			unknown = append(unknown, k)
		}
	}
	sort.Strings(unknown)
	for _, k := range unknown {
		hint := Suggest(k, names)
		if hint == "" && len(names) > 0 {
			hint = " (the plan declares: " + strings.Join(names, ", ") + ")"
		}
		problems = append(problems, fmt.Sprintf("unknown param %q%s", k, hint))
	}
	for _, d := range p.Params {
		s, ok := given[d.Name]
		switch {
		case ok:
			v, err := d.Convert(s)
			if err != nil {
				problems = append(problems, fmt.Sprintf("param %s: %v", d.Name, err))
				continue
			}
			out[d.Name] = v
		case d.Default != nil:
			out[d.Name] = d.Default
		case d.Required:
			problems = append(problems, fmt.Sprintf("param %s is required: pass --param %s=VALUE", d.Name, d.Name))
		default:
			out[d.Name] = zero(d.Type)
		}
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("%s", strings.Join(problems, "\n"))
	}
	return out, nil
}

func zero(k Kind) any {
	switch k {
	case Int:
		return int64(0)
	case Bool:
		return false
	case Duration:
		return time.Duration(0)
	case StringList:
		return []string{}
	}
	return ""
}
