package journal

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
)

// Record is one decoded journal line.
type Record struct {
	// Line is the 1-based line number in the file.
	Line int
	// Raw is the line as written, without its newline.
	Raw []byte
	// Seq, Prev and Type are the "seq", "prev" and "type" fields, or zero
	// if a field is missing or has the wrong JSON type.
	Seq  int
	Prev string
	Type string
	// Fields holds every top-level field of the line, including seq, prev
	// and type.
	Fields map[string]json.RawMessage
}

// Torn describes a torn last line: the remains of a write that a crash
// interrupted.
type Torn struct {
	// Line is the 1-based line number of the torn line.
	Line int
	// Bytes is its length, including a newline if it has one; the intact
	// journal is the file less its last Bytes bytes.
	Bytes int
}

// Report is the result of [Verify].
type Report struct {
	// Path is the journal file checked.
	Path string
	// Records is the number of lines that decode as records.
	Records int
	// Torn is the torn last line, if any. It is not by itself a problem.
	Torn *Torn
	// Problems describes each break in the chain, naming line numbers.
	Problems []string
	// OK reports that there are no problems.
	OK bool
	// Head is the sha256 of the last complete line. The chain cannot show
	// an edit of the last line or records dropped from the end; comparing
	// Head with the value printed when the run ended can.
	Head string
	// MACs is the number of records that carry a "mac" field.
	MACs int
	// MACChecked reports that every record's MAC was checked against a key
	// ([VerifyKey]); with it, an edit of the last line is a problem too.
	MACChecked bool
}

// rawLine is one line of a journal file.
type rawLine struct {
	num        int
	text       []byte // without the newline
	terminated bool   // ended by a newline
}

// splitLines splits a journal file into lines.
func splitLines(data []byte) []rawLine {
	var lines []rawLine
	for num := 1; len(data) > 0; num++ {
		text, rest, found := bytes.Cut(data, []byte("\n"))
		lines = append(lines, rawLine{num: num, text: text, terminated: found})
		data = rest
	}
	return lines
}

// tornLast returns the Torn for the last line of a file if it is torn: it
// lacks its newline. Every record is written with its newline in one write,
// so a complete line that is not valid JSON is corruption, not a torn write.
func tornLast(lines []rawLine) *Torn {
	if len(lines) == 0 {
		return nil
	}
	l := lines[len(lines)-1]
	if l.terminated {
		return nil
	}
	n := len(l.text)
	if l.terminated {
		n++
	}
	return &Torn{Line: l.num, Bytes: n}
}

// errNotObject reports a valid JSON line that is not an object.
var errNotObject = errors.New("not a JSON object")

// parseLine decodes one line.
func parseLine(l rawLine) (Record, error) {
	rec := Record{Line: l.num, Raw: l.text}
	if !json.Valid(l.text) {
		return rec, errors.New("invalid JSON")
	}
	if err := json.Unmarshal(l.text, &rec.Fields); err != nil || rec.Fields == nil {
		return rec, errNotObject
	}
	// Fields of the wrong type are left zero; Verify reports them.
	_ = json.Unmarshal(rec.Fields["seq"], &rec.Seq)
	_ = json.Unmarshal(rec.Fields["prev"], &rec.Prev)
	_ = json.Unmarshal(rec.Fields["type"], &rec.Type)
	return rec, nil
}

// Read parses the journal file at path. A torn last line (one that lacks
// its trailing newline or is not valid JSON) is returned in torn, not as a
// record. Any other line that is not a JSON object is corruption: Read then
// returns an error naming the line.
//
// Read does not check the hash chain; see [Verify].
func Read(path string) (recs []Record, torn *Torn, err error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("read journal: %w", err)
	}
	lines := splitLines(data)
	if torn = tornLast(lines); torn != nil {
		lines = lines[:len(lines)-1]
	}
	recs = make([]Record, 0, len(lines))
	for _, l := range lines {
		rec, err := parseLine(l)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: line %d: %v", path, l.num, err)
		}
		recs = append(recs, rec)
	}
	return recs, torn, nil
}

// Verify checks the hash chain of the journal file at path: seq runs 1, 2,
// 3, …; the first prev is ""; every other prev is the SHA-256 of the
// previous line as written. Every problem is reported with its line number,
// and lines that do not decode are reported rather than stopping the check.
// A torn last line is reported in the Report's Torn but is not a problem.
//
// Verify returns an error only if the file cannot be read.
func Verify(path string) (Report, error) {
	return VerifyKey(path, nil)
}

// VerifyKey is [Verify] that, given a key, also requires every record to
// end with a "mac" field that is the HMAC-SHA256 of the line up to it under
// that key (see [Writer.SetKey]).
func VerifyKey(path string, key []byte) (Report, error) {
	rep := Report{Path: path, MACChecked: key != nil}
	data, err := os.ReadFile(path)
	if err != nil {
		return rep, fmt.Errorf("read journal: %w", err)
	}
	lines := splitLines(data)
	if rep.Torn = tornLast(lines); rep.Torn != nil {
		lines = lines[:len(lines)-1]
	}
	problem := func(l rawLine, format string, args ...any) {
		rep.Problems = append(rep.Problems, fmt.Sprintf("line %d: ", l.num)+fmt.Sprintf(format, args...))
	}
	wantSeq := 1
	for i, l := range lines {
		rec, err := parseLine(l)
		if err != nil {
			problem(l, "%v (corrupted?)", err)
			wantSeq++
			continue
		}
		rep.Records++
		if _, ok := rec.Fields["mac"]; ok {
			rep.MACs++
		}
		if key != nil {
			if msg := checkMAC(l.text, key); msg != "" {
				problem(l, "%s", msg)
			}
		}

		var seq int
		if json.Unmarshal(rec.Fields["seq"], &seq) != nil {
			problem(l, "missing or invalid seq")
			wantSeq++
		} else {
			if seq != wantSeq {
				problem(l, "seq is %d, want %d (record removed, duplicated or reordered?)", seq, wantSeq)
			}
			wantSeq = seq + 1
		}

		var prev string
		switch {
		case json.Unmarshal(rec.Fields["prev"], &prev) != nil:
			problem(l, "missing or invalid prev")
		case i == 0 && prev != "":
			problem(l, "prev is not empty, but this is the first line (earlier records removed?)")
		case i > 0 && prev != hashLine(lines[i-1].text):
			problem(l, "prev does not match line %d (record edited or removed?)", lines[i-1].num)
		}
	}
	if len(lines) > 0 {
		rep.Head = hashLine(lines[len(lines)-1].text)
	}
	rep.OK = len(rep.Problems) == 0
	return rep, nil
}

// checkMAC checks the "mac" field that ends a line; "" means it is right.
func checkMAC(text, key []byte) string {
	n := len(macField) + 2*sha256.Size + 2
	if len(text) < n || !bytes.Equal(text[len(text)-n:len(text)-n+len(macField)], []byte(macField)) || !bytes.HasSuffix(text, []byte(`"}`)) {
		return "no mac at the end of the record (written without the key, or the mac was removed)"
	}
	got, err := hex.DecodeString(string(text[len(text)-n+len(macField) : len(text)-2]))
	if err != nil {
		return "mac is not hex"
	}
	m := hmac.New(sha256.New, key)
	m.Write(text[:len(text)-n])
	if !hmac.Equal(got, m.Sum(nil)) {
		return "mac does not match (record edited, or a different key)"
	}
	return ""
}

// hashLine returns the hex SHA-256 of a line as written, without its
// newline.
func hashLine(text []byte) string {
	sum := sha256.Sum256(text)
	return hex.EncodeToString(sum[:])
}
