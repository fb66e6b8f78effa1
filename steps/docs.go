package steps

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/pgcutover/cutover/schema"
)

// Identity of the generated plan schema.
const (
	schemaID      = "https://pgcutover.dev/schema/plan.v1.json"
	schemaDialect = "https://json-schema.org/draft/2020-12/schema"
	schemaTitle   = "cutover plan (" + schema.APIVersion + ")"
)

// Patterns shared by the schema and its tests. They use only syntax that
// ECMA-262 and Go's RE2 read the same way.
const (
	// durationPattern accepts what time.ParseDuration accepts for the
	// non-negative durations a plan writes: 0, 30s, 1.5h, 1h30m, 250ms.
	durationPattern = `^(0|([0-9]+(\.[0-9]+)?(ns|us|µs|μs|ms|s|m|h))+)$`
	// singleTemplatePattern is a value that is exactly one ${{ expression }},
	// the only template a non-string input accepts.
	singleTemplatePattern = `^\s*\$\{\{[\s\S]*\}\}\s*$`
	// templatePattern is a string that embeds at least one ${{ expression }}.
	templatePattern = `\$\{\{`
	// identPattern is a step id, or the name of a param, secret or target.
	identPattern = `^[a-z][a-z0-9_]*$`
	// planNamePattern is a plan's name.
	planNamePattern = `^[a-z0-9][a-z0-9_.-]*$`
	// envNamePattern is an environment variable name (or its prefix).
	envNamePattern = `^[A-Za-z_][A-Za-z0-9_]*$`
	// nonBlankPattern is an expression that is not empty.
	nonBlankPattern = `\S`
)

// jsonObject is one JSON Schema object; encoding/json writes its keys sorted.
type jsonObject = map[string]any

func ref(name string) jsonObject { return jsonObject{"$ref": "#/$defs/" + name} }

// JSONSchema returns the JSON Schema (draft 2020-12) of cutover/v1 plan
// files, for editors. The step list holds one schema per registered step
// type, built from its declared inputs. The output is deterministic, indented
// by two spaces and ends with a newline.
func JSONSchema() []byte {
	types := All()
	defs := jsonObject{
		"duration": jsonObject{
			"type":        "string",
			"pattern":     durationPattern,
			"description": "a duration such as 30s, 10m or 1h30m",
		},
		"template": jsonObject{
			"type":        "string",
			"pattern":     singleTemplatePattern,
			"description": "exactly one ${{ expression }}, evaluated when the step runs",
		},
		"expression": jsonObject{
			"type":        "string",
			"pattern":     nonBlankPattern,
			"description": "a CEL expression over params, targets, run and earlier steps' outputs",
		},
		"secret_ref": jsonObject{
			"type":                 "object",
			"description":          "the value of a secret declared under secrets",
			"properties":           jsonObject{"secret": jsonObject{"type": "string", "pattern": identPattern, "description": "name of a declared secret"}},
			"required":             []string{"secret"},
			"additionalProperties": false,
		},
		"retry":  retrySchema(),
		"param":  paramSchema(),
		"secret": secretSchema(),
		"target": targetSchema(),
	}
	mainSteps := make([]any, 0, len(types))
	innerSteps := make([]any, 0, len(types))
	for _, t := range types {
		defs["with."+t.Name] = withSchema(t)
		mainSteps = append(mainSteps, stepSchema(t, true))
		innerSteps = append(innerSteps, stepSchema(t, false))
	}
	defs["step"] = jsonObject{
		"description": "a step of the main steps list; its type decides what goes under with",
		"oneOf":       mainSteps,
	}
	defs["rollback_step"] = jsonObject{
		"description": "a step of a rollback block or of finally: no id needed, no commit, no rollback of its own",
		"oneOf":       innerSteps,
	}
	doc := jsonObject{
		"$schema":              schemaDialect,
		"$id":                  schemaID,
		"title":                schemaTitle,
		"description":          "A declarative PostgreSQL cutover runbook. Generated from the step declarations; do not edit.",
		"type":                 "object",
		"additionalProperties": false,
		"required":             []string{"apiVersion", "kind", "name", "version", "steps"},
		"properties": jsonObject{
			"apiVersion":  jsonObject{"const": schema.APIVersion, "description": "the plan format"},
			"kind":        jsonObject{"const": "Plan"},
			"name":        jsonObject{"type": "string", "pattern": planNamePattern, "description": "the plan's name: lower case letters, digits, '.', '_' or '-'"},
			"version":     jsonObject{"type": "integer", "minimum": 1, "description": "an integer bumped on every change"},
			"description": jsonObject{"type": "string"},
			"params": jsonObject{
				"type":                 "object",
				"description":          "typed plan inputs, set with --param name=value and read as params.<name>",
				"propertyNames":        jsonObject{"pattern": identPattern},
				"additionalProperties": ref("param"),
			},
			"secrets": jsonObject{
				"type":                 "object",
				"description":          "where secret values come from; values are never stored in the plan",
				"propertyNames":        jsonObject{"pattern": identPattern},
				"additionalProperties": ref("secret"),
			},
			"targets": jsonObject{
				"type":                 "object",
				"description":          "PostgreSQL connections, read in expressions as targets.<name>",
				"propertyNames":        jsonObject{"pattern": identPattern},
				"additionalProperties": ref("target"),
			},
			"defaults": jsonObject{
				"type":                 "object",
				"description":          "timeout and retry for every step that does not set its own",
				"additionalProperties": false,
				"properties": jsonObject{
					"timeout": ref("duration"),
					"retry":   ref("retry"),
				},
			},
			"steps": jsonObject{
				"type":        "array",
				"description": "the runbook, in order",
				"minItems":    1,
				"items":       ref("step"),
			},
			"finally": jsonObject{
				"type":        "array",
				"description": "steps that always run at the end, whatever happened",
				"items":       ref("rollback_step"),
			},
		},
		"$defs": defs,
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(doc); err != nil {
		panic("steps: cannot encode the plan schema: " + err.Error())
	}
	return b.Bytes()
}

func retrySchema() jsonObject {
	return jsonObject{
		"type":                 "object",
		"description":          "how often a failing step is attempted and how long to wait between attempts",
		"additionalProperties": false,
		"properties": jsonObject{
			"attempts":    jsonObject{"type": "integer", "minimum": 1, "maximum": 100, "description": "total attempts, counting the first", "default": 1},
			"backoff":     withDescription(ref("duration"), "wait before the second attempt; it doubles after each failure", "1s"),
			"max_backoff": withDescription(ref("duration"), "cap on the doubling wait", "30s"),
		},
	}
}

func withDescription(s jsonObject, doc string, def any) jsonObject {
	s["description"] = doc
	if def != nil {
		s["default"] = def
	}
	return s
}

func paramSchema() jsonObject {
	kinds := make([]string, 0, len(schema.ParamTypes))
	for k := range schema.ParamTypes {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	return jsonObject{
		"type":                 "object",
		"additionalProperties": false,
		"properties": jsonObject{
			"type":        jsonObject{"enum": kinds, "default": "string", "description": "list is a list of strings (comma-separated on the command line)"},
			"enum":        jsonObject{"type": "array", "items": jsonObject{"type": "string"}, "description": "allowed values of a string param"},
			"required":    jsonObject{"type": "boolean", "description": "the run fails unless --param sets it"},
			"default":     jsonObject{"type": []string{"string", "integer", "number", "boolean", "array"}, "items": jsonObject{"type": "string"}, "description": "value used when --param does not set it"},
			"description": jsonObject{"type": "string"},
		},
		"allOf": []any{
			jsonObject{
				"if":   jsonObject{"required": []string{"enum"}},
				"then": jsonObject{"properties": jsonObject{"type": jsonObject{"const": "string"}}},
			},
			jsonObject{
				"if":   jsonObject{"required": []string{"required"}, "properties": jsonObject{"required": jsonObject{"const": true}}},
				"then": jsonObject{"not": jsonObject{"required": []string{"default"}}},
			},
		},
	}
}

func secretSchema() jsonObject {
	from := func(name, doc string, props jsonObject, field string) jsonObject {
		props["from"] = jsonObject{"const": name}
		return jsonObject{
			"type":                 "object",
			"title":                "from: " + name,
			"description":          doc,
			"additionalProperties": false,
			"required":             []string{"from", field},
			"properties":           props,
		}
	}
	return jsonObject{"oneOf": []any{
		from("env", "read from an environment variable", jsonObject{"name": jsonObject{"type": "string", "pattern": envNamePattern, "description": "environment variable name"}}, "name"),
		from("file", "read from a file", jsonObject{"path": jsonObject{"type": "string", "description": "file holding the value"}}, "path"),
		from("command", "printed by a program", jsonObject{"argv": jsonObject{"type": "array", "minItems": 1, "items": jsonObject{"type": "string"}, "description": "program and arguments"}}, "argv"),
	}}
}

func targetSchema() jsonObject {
	str := func(doc string) jsonObject { return jsonObject{"type": "string", "description": doc} }
	parts := []any{}
	for _, p := range []string{"host", "port", "dbname", "user", "password"} {
		parts = append(parts, jsonObject{"required": []string{p}})
	}
	return jsonObject{
		"type":                 "object",
		"description":          "a PostgreSQL connection: a url secret, connection parts, or env_prefix",
		"additionalProperties": false,
		"properties": jsonObject{
			"url":         withDescription(ref("secret_ref"), "secret holding a connection URL", nil),
			"host":        str("server host name or address"),
			"port":        jsonObject{"type": "integer", "minimum": 1, "maximum": 65535},
			"dbname":      str("database name"),
			"user":        str("role to connect as"),
			"password":    withDescription(ref("secret_ref"), "secret holding the password", nil),
			"env_prefix":  jsonObject{"type": "string", "pattern": envNamePattern, "description": "read libpq settings from <prefix>HOST, <prefix>PORT, …"},
			"sslmode":     jsonObject{"enum": schema.SSLModes, "description": "libpq sslmode"},
			"sslrootcert": str("CA certificate file"),
			"sslcert":     str("client certificate file (with sslkey)"),
			"sslkey":      str("client key file (with sslcert)"),
		},
		"oneOf": []any{
			jsonObject{"title": "url", "required": []string{"url"}},
			jsonObject{"title": "connection parts", "anyOf": parts},
			jsonObject{"title": "env_prefix", "required": []string{"env_prefix"}},
		},
		"dependentRequired": jsonObject{
			"sslcert": []string{"sslkey"},
			"sslkey":  []string{"sslcert"},
		},
	}
}

// stepSchema is the schema of one step of type t: a step of the main list
// (main) or of a rollback block or finally.
func stepSchema(t *Type, main bool) jsonObject {
	props := jsonObject{
		"id":          jsonObject{"type": "string", "pattern": identPattern, "description": "names the step in expressions: steps.<id>"},
		"name":        jsonObject{"type": "string", "description": "human-readable title"},
		"description": jsonObject{"type": "string"},
		"type":        jsonObject{"const": t.Name, "description": t.Summary},
		"when":        withDescription(ref("expression"), "run the step only when this expression is true", nil),
		"with":        ref("with." + t.Name),
		"assert": jsonObject{
			"description": "expressions that must all be true after the step ran",
			"oneOf": []any{
				ref("expression"),
				jsonObject{"type": "array", "items": ref("expression")},
			},
		},
		"timeout": withDescription(ref("duration"), "fail the step after this long (defaults.timeout when unset)", nil),
		"retry":   ref("retry"),
	}
	required := []string{"type"}
	if main {
		required = append(required, "id")
		props["commit"] = jsonObject{"type": "boolean", "description": "a commit point: once it succeeds, a later failure no longer undoes it or any step before it"}
		props["idempotent"] = jsonObject{"type": "boolean", "description": "running the step again after an interruption is safe: cutover resume --retry-in-doubt may re-run it when a crash left it in doubt"}
		props["rollback"] = jsonObject{
			"type":        "array",
			"description": "steps that undo this one, run when it or a later step fails and no commit point has passed since (blocks run newest first)",
			"items":       ref("rollback_step"),
		}
	}
	for _, f := range t.Inputs {
		if f.Required {
			required = append(required, "with")
			break
		}
	}
	sort.Strings(required)
	return jsonObject{
		"type":                 "object",
		"title":                t.Name,
		"description":          t.Summary,
		"additionalProperties": false,
		"required":             required,
		"properties":           props,
	}
}

// withSchema is the schema of the with mapping of a step of type t.
func withSchema(t *Type) jsonObject {
	props := jsonObject{}
	var required []string
	for _, f := range t.Inputs {
		props[f.Name] = fieldSchema(f)
		if f.Required {
			required = append(required, f.Name)
		}
	}
	s := jsonObject{
		"type":                 "object",
		"description":          "inputs of " + t.Name,
		"additionalProperties": false,
		"properties":           props,
	}
	if len(required) > 0 {
		sort.Strings(required)
		s["required"] = required
	}
	return s
}

// fieldSchema is the schema of one input value, following how the decoder
// reads a value of the field's kind.
func fieldSchema(f schema.Field) any {
	var s jsonObject
	switch f.Kind {
	case schema.String, schema.Dyn:
		s = stringSchema(f)
	case schema.Int:
		s = scalarSchema(f, jsonObject{"type": "integer"})
	case schema.Bool:
		s = scalarSchema(f, jsonObject{"type": "boolean"})
	case schema.Double:
		s = scalarSchema(f, jsonObject{"type": "number"})
	case schema.Duration:
		s = scalarSchema(f, ref("duration"))
	case schema.StringList:
		item := f
		item.Kind = schema.String
		s = jsonObject{"type": "array", "items": stringSchema(item)}
	case schema.IntList:
		// One integer is read as a list of one (expect_status: 200).
		s = jsonObject{"oneOf": []any{jsonObject{"type": "integer"}, jsonObject{"type": "array", "items": jsonObject{"type": "integer"}}}}
	case schema.StringMap:
		item := f
		item.Kind = schema.String
		item.Enum = nil
		s = jsonObject{"type": "object", "additionalProperties": stringSchema(item)}
	default:
		// The decoder reads no value of this kind.
		return false
	}
	if f.Doc != "" {
		s["description"] = f.Doc
	}
	if f.Default != nil {
		s["default"] = jsonValue(f.Default)
	}
	return s
}

// stringSchema is a string input (or one list item or map value): a string,
// perhaps restricted to an enum unless it is a template, or a secret
// reference when the field allows one.
func stringSchema(f schema.Field) jsonObject {
	plain := jsonObject{"type": "string"}
	templated := !f.Literal && f.Ref == schema.RefNone
	switch {
	case f.Ref != schema.RefNone:
		plain["pattern"] = identPattern
	case len(f.Enum) > 0:
		plain["enum"] = f.Enum
	}
	var alts []any
	if len(f.Enum) > 0 && templated {
		alts = append(alts, plain, jsonObject{"type": "string", "pattern": templatePattern})
	} else {
		alts = append(alts, plain)
	}
	if f.Secret {
		alts = append(alts, ref("secret_ref"))
	}
	if len(alts) == 1 {
		return plain
	}
	return jsonObject{"anyOf": alts}
}

// scalarSchema admits a single ${{ }} template besides the literal value,
// unless the field is literal.
func scalarSchema(f schema.Field, literal jsonObject) jsonObject {
	if f.Literal {
		return literal
	}
	return jsonObject{"anyOf": []any{literal, ref("template")}}
}

// jsonValue converts a declared default to its plan (YAML) spelling.
func jsonValue(v any) any {
	switch x := v.(type) {
	case time.Duration:
		return x.String()
	case []time.Duration:
		out := make([]string, len(x))
		for i, d := range x {
			out[i] = d.String()
		}
		return out
	}
	return v
}

// formatValue writes a declared default the way a plan would spell it.
func formatValue(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		if x == "" {
			return `""`
		}
		return x
	case time.Duration:
		return x.String()
	case []string:
		return "[" + strings.Join(x, ", ") + "]"
	case []int64:
		parts := make([]string, len(x))
		for i, n := range x {
			parts[i] = strconv.FormatInt(n, 10)
		}
		return "[" + strings.Join(parts, ", ") + "]"
	case []int:
		parts := make([]string, len(x))
		for i, n := range x {
			parts[i] = strconv.Itoa(n)
		}
		return "[" + strings.Join(parts, ", ") + "]"
	case map[string]string:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		parts := make([]string, len(keys))
		for i, k := range keys {
			parts[i] = k + ": " + x[k]
		}
		return "{" + strings.Join(parts, ", ") + "}"
	}
	return fmt.Sprint(v)
}

// fieldNotes lists what a field's declaration adds to its doc line. code
// marks up literal text.
func fieldNotes(f schema.Field, code func(string) string) []string {
	var notes []string
	if f.Secret {
		notes = append(notes, "secret-capable ("+code("{secret: name}")+")")
	}
	each := ""
	if f.Kind == schema.StringList {
		each = "each item "
	}
	switch f.Ref {
	case schema.RefTarget:
		notes = append(notes, each+"names a target")
	case schema.RefSecret:
		notes = append(notes, each+"names a secret")
	}
	if len(f.Enum) > 0 {
		vals := make([]string, len(f.Enum))
		for i, e := range f.Enum {
			vals[i] = code(e)
		}
		notes = append(notes, "one of "+strings.Join(vals, ", "))
	}
	if f.Literal {
		notes = append(notes, "literal: no "+code("${{ }}")+" templates")
	}
	return notes
}

func fieldDescription(f schema.Field, code func(string) string) string {
	d := oneLine(f.Doc)
	if notes := fieldNotes(f, code); len(notes) > 0 {
		if d != "" {
			d += " — "
		}
		d += strings.Join(notes, "; ")
	}
	return d
}

// mutatesText says whether steps of type t mutate: the answer for a step
// that sets no input, and the literal input values that change it.
func mutatesText(t *Type, code func(string) string) string {
	if t.Mutates == nil {
		return "no"
	}
	base := t.Mutates(schema.Inputs{})
	var except []string
	for _, f := range t.Inputs {
		for _, p := range probes(f) {
			if t.Mutates(schema.Inputs{f.Name: p.val}) != base {
				except = append(except, code(f.Name+": "+p.text))
			}
		}
	}
	s := "no"
	if base {
		s = "yes"
	}
	if len(except) > 0 {
		s += ", unless " + strings.Join(except, " or ")
	}
	return s
}

type probe struct {
	text string
	val  *schema.Value
}

// probes are the literal values of a field worth trying on Mutates: both
// booleans, and every value of an enum.
func probes(f schema.Field) []probe {
	switch {
	case f.Kind == schema.Bool:
		return []probe{
			{"true", &schema.Value{Kind: f.Kind, Bool: true}},
			{"false", &schema.Value{Kind: f.Kind, Bool: false}},
		}
	case (f.Kind == schema.String || f.Kind == schema.Dyn) && len(f.Enum) > 0:
		out := make([]probe, len(f.Enum))
		for i, e := range f.Enum {
			out[i] = probe{e, &schema.Value{Kind: f.Kind, Tmpl: &schema.Template{Raw: e, Parts: []schema.TemplatePart{{Lit: e}}}}}
		}
		return out
	}
	return nil
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// sentence is s on one line, ending with a full stop.
func sentence(s string) string {
	s = oneLine(s)
	if s == "" || strings.HasSuffix(s, ".") {
		return s
	}
	return s + "."
}

func mdCode(s string) string {
	if strings.Contains(s, "`") {
		return "`` " + s + " ``"
	}
	return "`" + s + "`"
}

func plainText(s string) string { return s }

// mdCell escapes text for a Markdown table cell.
func mdCell(s string) string {
	return strings.ReplaceAll(oneLine(s), "|", `\|`)
}

// Markdown returns the step reference (steps/README.md): a summary of every
// registered step type, then each type's doc, dry-run behaviour, inputs,
// outputs and example.
func Markdown() string {
	var b strings.Builder
	b.WriteString("# Step types (" + schema.APIVersion + ")\n\n")
	b.WriteString("Generated from the step declarations by `go test ./steps -update`; do not edit.\n\n")
	b.WriteString("Each step's inputs go under `with:`. A step's outputs are readable by later steps as `steps.<id>.outputs.<name>`.\n\n")
	types := All()
	b.WriteString("| type | mutates | summary |\n|---|---|---|\n")
	for _, t := range types {
		fmt.Fprintf(&b, "| [`%s`](#%s) | %s | %s |\n", t.Name, anchor(t.Name), mdCell(mutatesText(t, mdCode)), mdCell(t.Summary))
	}
	b.WriteString("\n")
	for _, t := range types {
		b.WriteString("## " + t.Name + "\n\n")
		if t.Summary != "" {
			b.WriteString(oneLine(t.Summary) + "\n\n")
		}
		if t.Doc != "" {
			b.WriteString(strings.TrimSpace(t.Doc) + "\n\n")
		}
		b.WriteString("Mutates: " + mutatesText(t, mdCode) + ".\n\n")
		if t.DryRun != "" {
			b.WriteString("Dry run: " + sentence(t.DryRun) + "\n\n")
		}
		b.WriteString("### Inputs\n\n")
		if len(t.Inputs) == 0 {
			b.WriteString("No inputs.\n\n")
		} else {
			b.WriteString("| name | type | required | default | description |\n|---|---|---|---|---|\n")
			for _, f := range t.Inputs {
				req, def := "", ""
				if f.Required {
					req = "yes"
				}
				if s := formatValue(f.Default); s != "" {
					def = mdCode(s)
				}
				fmt.Fprintf(&b, "| `%s` | `%s` | %s | %s | %s |\n", f.Name, f.Kind, req, mdCell(def), mdCell(fieldDescription(f, mdCode)))
			}
			b.WriteString("\n")
		}
		b.WriteString("### Outputs\n\n")
		if len(t.Outputs) == 0 {
			b.WriteString("No outputs.\n\n")
		} else {
			fmt.Fprintf(&b, "Readable as `steps.<id>.outputs.<name>`.\n\n")
			b.WriteString("| name | CEL type | description |\n|---|---|---|\n")
			for _, o := range t.Outputs {
				fmt.Fprintf(&b, "| `%s` | `%s` | %s |\n", o.Name, o.Kind, mdCell(o.Doc))
			}
			b.WriteString("\n")
		}
		if ex := strings.TrimRight(t.Example, "\n"); ex != "" {
			b.WriteString("### Example\n\n```yaml\n" + ex + "\n```\n\n")
		}
	}
	return strings.TrimRight(b.String(), "\n") + "\n"
}

// anchor is the GitHub heading anchor of a step type's section.
func anchor(name string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(name) {
		switch {
		case r == ' ':
			b.WriteByte('-')
		case r == '-' || r == '_' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9':
			b.WriteRune(r)
		}
	}
	return b.String()
}

// Describe returns the help text that `cutover steps <type>` prints: the
// same information as the type's section of the step reference, laid out in
// aligned columns for a terminal.
func Describe(t *Type) string {
	var b strings.Builder
	b.WriteString(t.Name)
	if t.Summary != "" {
		b.WriteString(" — " + oneLine(t.Summary))
	}
	b.WriteString("\n\n")
	if t.Doc != "" {
		b.WriteString(wrap(t.Doc, "  ", 78) + "\n")
	}
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "Mutates:\t%s\n", mutatesText(t, plainText))
	if t.DryRun != "" {
		fmt.Fprintf(tw, "Dry run:\t%s\n", oneLine(t.DryRun))
	}
	tw.Flush()

	b.WriteString("\nInputs (under with:):\n")
	if len(t.Inputs) == 0 {
		b.WriteString("  none\n")
	} else {
		tw = tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  NAME\tTYPE\tREQUIRED\tDEFAULT\tDESCRIPTION")
		for _, f := range t.Inputs {
			req, def := "no", formatValue(f.Default)
			if f.Required {
				req = "yes"
			}
			if def == "" {
				def = "-"
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", f.Name, f.Kind, req, def, fieldDescription(f, plainText))
		}
		tw.Flush()
	}

	b.WriteString("\nOutputs (readable as steps.<id>.outputs.<name>):\n")
	if len(t.Outputs) == 0 {
		b.WriteString("  none\n")
	} else {
		tw = tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  NAME\tCEL TYPE\tDESCRIPTION")
		for _, o := range t.Outputs {
			fmt.Fprintf(tw, "  %s\t%s\t%s\n", o.Name, o.Kind, oneLine(o.Doc))
		}
		tw.Flush()
	}

	if ex := strings.TrimRight(t.Example, "\n"); ex != "" {
		b.WriteString("\nExample:\n")
		for _, line := range strings.Split(ex, "\n") {
			if line == "" {
				b.WriteString("\n")
				continue
			}
			b.WriteString("  " + line + "\n")
		}
	}
	return b.String()
}

// wrap fills text into lines of at most width columns (counting indent),
// keeping paragraph breaks (blank lines).
func wrap(text, indent string, width int) string {
	var b strings.Builder
	for _, para := range strings.Split(strings.TrimSpace(text), "\n\n") {
		words := strings.Fields(para)
		if len(words) == 0 {
			continue
		}
		line := indent + words[0]
		n := len([]rune(line))
		for _, w := range words[1:] {
			wl := len([]rune(w))
			if n+1+wl > width {
				b.WriteString(line + "\n")
				line, n = indent+w, len([]rune(indent))+wl
				continue
			}
			line += " " + w
			n += 1 + wl
		}
		b.WriteString(line + "\n\n")
	}
	return strings.TrimRight(b.String(), "\n") + "\n"
}
