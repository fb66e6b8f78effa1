package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/pgcutover/cutover/engine/journal"
)

// TestMain lets the test binary act as the cutover command inside scripts.
func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"cutover": func() {
			if at := os.Getenv("CUTOVER_TEST_CRASH_AT"); at != "" {
				observeHook = crashAt(at)
			}
			os.Exit(run(context.Background(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr, nil))
		},
	})
}

// TestScripts runs the command-line scripts in testdata/script. Each script
// is one behaviour, with its plans inline.
//
// Besides the standard testscript commands, scripts can use:
//
//	journals N           there are exactly N journal files in $WORK/journal
//	journalenv           set JOURNAL (path), RUNID and RUNPREFIX (a unique
//	                     prefix of RUNID) for the newest journal
//	grepjournal REGEXP   some journal file in $WORK/journal matches REGEXP
//	                     (negate with !: no journal file matches)
//	tamper               flip one byte inside a string on line 3 of the
//	                     newest journal, keeping the line valid JSON
//	tear                 cut the newest journal's last line in half, as a
//	                     crash mid-write would leave it
//	jsonout KEY=VALUE... the last command's stdout is one JSON value; for
//	                     an object, each top-level KEY renders as VALUE
func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir:                 filepath.Join("testdata", "script"),
		RequireExplicitExec: true,
		RequireUniqueNames:  true,
		Setup: func(env *testscript.Env) error {
			env.Setenv("NO_COLOR", "1")
			env.Setenv("CUTOVER_JOURNAL_DIR", filepath.Join(env.WorkDir, "journal"))
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"journals":    cmdJournals,
			"journalenv":  cmdJournalEnv,
			"grepjournal": cmdGrepJournal,
			"tamper":      cmdTamper,
			"tear":        cmdTear,
			"jsonout":     cmdJSONOut,
		},
	})
}

// journalFiles lists the journal files in $WORK/journal, oldest first.
func journalFiles(ts *testscript.TestScript) []string {
	dir := filepath.Join(ts.Getenv("WORK"), "journal")
	ids, err := journal.List(dir)
	ts.Check(err)
	var files []string
	for _, id := range ids {
		files = append(files, filepath.Join(dir, id+journal.Ext))
	}
	return files
}

func newestJournal(ts *testscript.TestScript) string {
	files := journalFiles(ts)
	if len(files) == 0 {
		ts.Fatalf("no journal in $WORK/journal")
	}
	return files[len(files)-1]
}

func cmdJournals(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: journals N")
	}
	files := journalFiles(ts)
	if got := fmt.Sprint(len(files)); got != args[0] {
		ts.Fatalf("%s journal files, want %s: %v", got, args[0], files)
	}
}

func cmdJournalEnv(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 0 {
		ts.Fatalf("usage: journalenv")
	}
	path := newestJournal(ts)
	id := strings.TrimSuffix(filepath.Base(path), journal.Ext)
	ts.Setenv("JOURNAL", path)
	ts.Setenv("RUNID", id)
	// The random suffix makes a prefix that stops inside it unique among
	// the few runs a script makes.
	ts.Setenv("RUNPREFIX", id[:len(id)-3])
}

func cmdGrepJournal(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 {
		ts.Fatalf("usage: grepjournal REGEXP")
	}
	re, err := regexp.Compile(args[0])
	ts.Check(err)
	files := journalFiles(ts)
	if len(files) == 0 {
		ts.Fatalf("no journal in $WORK/journal: nothing to search")
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		ts.Check(err)
		if loc := re.FindIndex(data); loc != nil {
			if neg {
				ts.Fatalf("%s matches %q: %q", filepath.Base(f), args[0], data[max(0, loc[0]-40):min(len(data), loc[1]+40)])
			}
			return
		}
	}
	if !neg {
		ts.Fatalf("no journal matches %q", args[0])
	}
}

// splitJournal returns the lines of a journal file, each with its newline.
func splitJournal(data []byte) [][]byte {
	var lines [][]byte
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			lines = append(lines, data)
			break
		}
		lines = append(lines, data[:i+1])
		data = data[i+1:]
	}
	return lines
}

func cmdTamper(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 0 {
		ts.Fatalf("usage: tamper")
	}
	path := newestJournal(ts)
	data, err := os.ReadFile(path)
	ts.Check(err)
	lines := splitJournal(data)
	if len(lines) < 4 {
		ts.Fatalf("%s has %d lines; tamper edits line 3 of at least 4", path, len(lines))
	}
	// Change one digit of the record's time: the line stays valid JSON, so
	// only the hash chain can tell.
	line := lines[2]
	i := bytes.Index(line, []byte(`"time":"`))
	if i < 0 {
		ts.Fatalf("line 3 has no time field: %s", line)
	}
	i += len(`"time":"`) + 3 // the last digit of the year
	if line[i] == '9' {
		line[i] = '8'
	} else {
		line[i]++
	}
	if !json.Valid(bytes.TrimSpace(line)) {
		ts.Fatalf("tampered line 3 is not valid JSON: %s", line)
	}
	ts.Check(os.WriteFile(path, bytes.Join(lines, nil), 0o600))
}

func cmdTear(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 0 {
		ts.Fatalf("usage: tear")
	}
	path := newestJournal(ts)
	data, err := os.ReadFile(path)
	ts.Check(err)
	lines := splitJournal(data)
	last := lines[len(lines)-1]
	keep := len(data) - len(last) + len(last)/2
	ts.Check(os.WriteFile(path, data[:keep], 0o600))
}

func cmdJSONOut(ts *testscript.TestScript, neg bool, args []string) {
	if neg {
		ts.Fatalf("usage: jsonout KEY=VALUE...")
	}
	out := ts.ReadFile("stdout")
	dec := json.NewDecoder(strings.NewReader(out))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		ts.Fatalf("stdout is not JSON: %v\n%s", err, out)
	}
	if dec.More() {
		ts.Fatalf("stdout holds more than one JSON value:\n%s", out)
	}
	if len(args) == 0 {
		return
	}
	obj, ok := v.(map[string]any)
	if !ok {
		ts.Fatalf("stdout is JSON but not an object:\n%s", out)
	}
	for _, a := range args {
		k, want, ok := strings.Cut(a, "=")
		if !ok {
			ts.Fatalf("jsonout: want KEY=VALUE, got %q", a)
		}
		got, has := obj[k]
		if !has {
			keys := make([]string, 0, len(obj))
			for key := range obj {
				keys = append(keys, key)
			}
			sort.Strings(keys)
			ts.Fatalf("stdout JSON has no %q (keys: %s)", k, strings.Join(keys, ", "))
		}
		if s := fmt.Sprint(got); s != want {
			ts.Fatalf("stdout JSON %s is %q, want %q", k, s, want)
		}
	}
}
