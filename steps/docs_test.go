package steps

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pgcutover/cutover/schema"
)

var update = flag.Bool("update", false, "rewrite generated files")

const (
	schemaFile = "../schema/plan.v1.json"
	docsFile   = "README.md"
)

// checkGenerated compares a generated file with what the declarations
// produce now, or rewrites it under -update.
func checkGenerated(t *testing.T, path string, want []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, want, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v; run: go test ./steps -run 'UpToDate' -update", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s is out of date with the step declarations (first difference at line %d); run: go test ./steps -run 'UpToDate' -update", path, firstDiffLine(got, want))
	}
}

func firstDiffLine(a, b []byte) int {
	la, lb := bytes.Split(a, []byte("\n")), bytes.Split(b, []byte("\n"))
	for i := range min(len(la), len(lb)) {
		if !bytes.Equal(la[i], lb[i]) {
			return i + 1
		}
	}
	return min(len(la), len(lb)) + 1
}

func TestSchemaUpToDate(t *testing.T) { checkGenerated(t, schemaFile, JSONSchema()) }

func TestDocsUpToDate(t *testing.T) { checkGenerated(t, docsFile, []byte(Markdown())) }

func TestGeneratorsAreDeterministic(t *testing.T) {
	if !bytes.Equal(JSONSchema(), JSONSchema()) {
		t.Error("JSONSchema differs between two calls")
	}
	if Markdown() != Markdown() {
		t.Error("Markdown differs between two calls")
	}
}

// object returns m[key] as a JSON object, failing the test otherwise.
func object(t *testing.T, m map[string]any, path ...string) map[string]any {
	t.Helper()
	cur := m
	for _, k := range path {
		next, ok := cur[k].(map[string]any)
		if !ok {
			t.Fatalf("schema: %s is not an object", strings.Join(path, "."))
		}
		cur = next
	}
	return cur
}

// deref follows a local "#/$defs/…" reference.
func deref(t *testing.T, root, s map[string]any) map[string]any {
	t.Helper()
	r, ok := s["$ref"].(string)
	if !ok {
		return s
	}
	name, ok := strings.CutPrefix(r, "#/$defs/")
	if !ok {
		t.Fatalf("schema: unexpected $ref %q", r)
	}
	return object(t, root, "$defs", name)
}

func TestSchemaIsValidJSON(t *testing.T) {
	var root map[string]any
	if err := json.Unmarshal(JSONSchema(), &root); err != nil {
		t.Fatalf("schema is not valid JSON: %v", err)
	}
	if root["$schema"] != schemaDialect || root["$id"] != schemaID {
		t.Errorf("$schema/$id = %v, %v", root["$schema"], root["$id"])
	}
	props := object(t, root, "properties")
	if got := object(t, props, "apiVersion")["const"]; got != schema.APIVersion {
		t.Errorf("apiVersion const = %v", got)
	}
	var names []string
	for _, typ := range All() {
		names = append(names, typ.Name)
	}
	for _, def := range []string{"step", "rollback_step"} {
		variants, ok := object(t, root, "$defs", def)["oneOf"].([]any)
		if !ok {
			t.Fatalf("$defs.%s has no oneOf", def)
		}
		byType := map[string]map[string]any{}
		for _, v := range variants {
			vs, _ := v.(map[string]any)
			name, _ := object(t, vs, "properties", "type")["const"].(string)
			if name == "" {
				t.Errorf("$defs.%s: a variant has no type const", def)
				continue
			}
			if byType[name] != nil {
				t.Errorf("$defs.%s: type %s appears twice", def, name)
			}
			byType[name] = vs
		}
		if len(byType) != len(names) {
			t.Errorf("$defs.%s has %d step types; %d are registered", def, len(byType), len(names))
		}
		for _, typ := range All() {
			vs := byType[typ.Name]
			if vs == nil {
				t.Errorf("$defs.%s: step type %s is missing", def, typ.Name)
				continue
			}
			if vs["additionalProperties"] != false {
				t.Errorf("$defs.%s (%s) allows unknown keys", def, typ.Name)
			}
			with := deref(t, root, object(t, vs, "properties", "with"))
			wprops := object(t, with, "properties")
			if len(wprops) != len(typ.Inputs) {
				t.Errorf("%s: with has %d properties; %d inputs are declared", typ.Name, len(wprops), len(typ.Inputs))
			}
			required := map[string]bool{}
			if rs, ok := with["required"].([]any); ok {
				for _, r := range rs {
					required[r.(string)] = true
				}
			}
			for _, f := range typ.Inputs {
				if _, ok := wprops[f.Name]; !ok {
					t.Errorf("%s: input %s is missing from with", typ.Name, f.Name)
				}
				if required[f.Name] != f.Required {
					t.Errorf("%s: input %s: schema required=%v, declared %v", typ.Name, f.Name, required[f.Name], f.Required)
				}
			}
			_, hasCommit := object(t, vs, "properties")["commit"]
			if hasCommit != (def == "step") {
				t.Errorf("$defs.%s (%s): commit allowed = %v", def, typ.Name, hasCommit)
			}
		}
	}
}

func TestSchemaPatternsMatchDecoder(t *testing.T) {
	dur := regexp.MustCompile(durationPattern)
	for _, s := range []string{"0", "0s", "30s", "10m", "1h30m", "1.5h", "250ms", "10us", "10µs", "10μs", "2h45m30.5s"} {
		if !dur.MatchString(s) {
			t.Errorf("duration pattern refuses %q", s)
		}
		if _, err := time.ParseDuration(s); err != nil {
			t.Errorf("test sample %q: %v", s, err)
		}
	}
	for _, s := range []string{"", "30", "10 m", "-1s", "1d", "s", "${{ params.wait }}"} {
		if dur.MatchString(s) {
			t.Errorf("duration pattern accepts %q", s)
		}
	}
	single := regexp.MustCompile(singleTemplatePattern)
	for s, want := range map[string]bool{
		"${{ params.n }}":      true,
		"  ${{ params.n }}  ":  true,
		"${{ 1 }}${{ 2 }}":     true, // the decoder refuses it; the pattern cannot tell
		"n=${{ params.n }}":    false,
		"${{ params.n }} secs": false,
		"5":                    false,
	} {
		if single.MatchString(s) != want {
			t.Errorf("template pattern on %q = %v, want %v", s, !want, want)
		}
	}
	for _, typ := range All() {
		for _, f := range typ.Inputs {
			if d, ok := f.Default.(time.Duration); ok && !dur.MatchString(d.String()) {
				t.Errorf("%s.%s: default %s does not match the duration pattern", typ.Name, f.Name, d)
			}
		}
	}
}

// examplePlan wraps a step snippet in a minimal plan that declares the
// secrets and targets examples commonly use.
func examplePlan(snippet string) string {
	var b strings.Builder
	b.WriteString(`apiVersion: cutover/v1
kind: Plan
name: x
version: 1
secrets:
  new_url: {from: env, name: NEW_URL}
  old_url: {from: env, name: OLD_URL}
  new_password: {from: env, name: NEW_PASSWORD}
targets:
  new: {url: {secret: new_url}}
  old: {url: {secret: old_url}}
  admin: {url: {secret: old_url}}
steps:
`)
	for _, line := range strings.Split(strings.TrimRight(snippet, "\n"), "\n") {
		if line != "" {
			b.WriteString("  ")
		}
		b.WriteString(line + "\n")
	}
	return b.String()
}

func TestExamplesDecode(t *testing.T) {
	for _, typ := range All() {
		t.Run(typ.Name, func(t *testing.T) {
			if strings.TrimSpace(typ.Example) == "" {
				t.Fatal("no Example")
			}
			src := examplePlan(typ.Example)
			p, ds := schema.Decode(typ.Name+".example.yaml", []byte(src), Types)
			for _, d := range ds {
				t.Errorf("%s\n%s", d, d.Snippet)
			}
			if len(ds) > 0 {
				t.Logf("plan:\n%s", src)
				return
			}
			found := false
			for _, s := range p.Steps {
				found = found || s.Type == typ.Name
			}
			if !found {
				t.Errorf("the example has no step of type %s", typ.Name)
			}
		})
	}
}

func TestDeclarationsDocumented(t *testing.T) {
	decodable := map[schema.Kind]bool{
		schema.String: true, schema.Dyn: true, schema.Int: true, schema.Bool: true, schema.Double: true,
		schema.Duration: true, schema.StringList: true, schema.IntList: true, schema.StringMap: true,
	}
	for _, typ := range All() {
		if typ.Summary == "" || typ.Doc == "" || typ.DryRun == "" {
			t.Errorf("%s: Summary, Doc and DryRun are all needed for the docs", typ.Name)
		}
		seen := map[string]bool{}
		for _, f := range typ.Inputs {
			if seen[f.Name] {
				t.Errorf("%s: input %s is declared twice", typ.Name, f.Name)
			}
			seen[f.Name] = true
			if f.Doc == "" {
				t.Errorf("%s: input %s has no Doc", typ.Name, f.Name)
			}
			if !decodable[f.Kind] {
				t.Errorf("%s: input %s has kind %s, which a plan cannot write", typ.Name, f.Name, f.Kind)
			}
			if f.Required && f.Default != nil {
				t.Errorf("%s: input %s is required and has a default", typ.Name, f.Name)
			}
		}
		for _, o := range typ.Outputs {
			if o.Doc == "" {
				t.Errorf("%s: output %s has no Doc", typ.Name, o.Name)
			}
		}
	}
}

func TestDescribeAndMarkdownCoverDeclarations(t *testing.T) {
	md := Markdown()
	for _, typ := range All() {
		d := Describe(typ)
		if !strings.HasPrefix(d, typ.Name) {
			t.Errorf("Describe(%s) starts %q", typ.Name, strings.SplitN(d, "\n", 2)[0])
		}
		if strings.Contains(d, "|") && !strings.Contains(typ.Doc+typ.Example, "|") {
			t.Errorf("Describe(%s) contains a table pipe", typ.Name)
		}
		if !strings.Contains(md, "\n## "+typ.Name+"\n") {
			t.Errorf("Markdown has no section for %s", typ.Name)
		}
		for _, f := range typ.Inputs {
			if !strings.Contains(d, "\n  "+f.Name+" ") {
				t.Errorf("Describe(%s) does not list input %s", typ.Name, f.Name)
			}
			if !strings.Contains(md, "| `"+f.Name+"` |") {
				t.Errorf("Markdown does not list input %s of %s", f.Name, typ.Name)
			}
		}
		for _, o := range typ.Outputs {
			if !strings.Contains(d, "\n  "+o.Name+" ") {
				t.Errorf("Describe(%s) does not list output %s", typ.Name, o.Name)
			}
		}
	}
}

func TestMutatesText(t *testing.T) {
	typ := &Type{
		Name: "probe",
		Inputs: []schema.Field{
			{Name: "read_only", Kind: schema.Bool, Literal: true},
			{Name: "mode", Kind: schema.String, Enum: []string{"read", "write"}, Literal: true},
		},
		Mutates: func(in schema.Inputs) bool {
			if v := in["read_only"]; v != nil && v.Bool {
				return false
			}
			if v := in["mode"]; v != nil && v.Tmpl != nil && v.Tmpl.Raw == "read" {
				return false
			}
			return true
		},
	}
	if got, want := mutatesText(typ, plainText), "yes, unless read_only: true or mode: read"; got != want {
		t.Errorf("mutatesText = %q, want %q", got, want)
	}
	typ.Mutates = nil
	if got := mutatesText(typ, plainText); got != "no" {
		t.Errorf("mutatesText without Mutates = %q", got)
	}
}
