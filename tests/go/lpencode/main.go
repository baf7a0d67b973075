// Command lpencode is a test oracle: it encodes metrics described as JSON
// with InfluxData's Go line-protocol encoder (github.com/influxdata/line-protocol).
//
// Input (stdin), one JSON object per line:
//
//	{"name": "m", "tags": [["k","v"], ...],
//	 "fields": [["f", {"type": "int"|"uint"|"float"|"bool"|"string", "value": V}], ...],
//	 "time": <int64 ns>}
//
// Numbers are decoded exactly (json.Decoder.UseNumber), so int64/uint64 values
// beyond 2^53 survive. A "float", "int" or "uint" value may also be given as a
// JSON string, which is parsed with strconv (this is how to pass NaN, +Inf,
// -Inf, which JSON cannot express). "time" may also be a string.
//
// Output (stdout): exactly one record per input line, flushed immediately:
// the bytes the encoder wrote (normally one line ending in "\n"), or
// "ERROR <message>\n" when the encoder returned an error or wrote nothing.
// Input that cannot be turned into a metric gives "ERROR input: <message>\n".
//
// The encoder is used with its default settings (no field sorting, no uint
// support, fields with errors are skipped, no line length limit), which is how
// Telegraf's influx serializer behaves by default. Flags change them:
//
//	-uint-support        SetFieldTypeSupport(UintSupport): uint64 as "<n>u"
//	-fail-on-field-err   FailOnFieldErr(true): a bad field fails the metric
//	-sort-fields         SetFieldSortOrder(SortFields)
//	-max-line-bytes N    SetMaxLineBytes(N); a record may then span several lines
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	protocol "github.com/influxdata/line-protocol"
)

type metric struct {
	name   string
	tags   []*protocol.Tag
	fields []*protocol.Field
	t      time.Time
}

func (m *metric) Name() string                 { return m.name }
func (m *metric) TagList() []*protocol.Tag     { return m.tags }
func (m *metric) FieldList() []*protocol.Field { return m.fields }
func (m *metric) Time() time.Time              { return m.t }

type inputField struct {
	Type  string          `json:"type"`
	Value json.RawMessage `json:"value"`
}

type inputMetric struct {
	Name   *string             `json:"name"`
	Tags   [][]string          `json:"tags"`
	Fields [][]json.RawMessage `json:"fields"`
	Time   json.RawMessage     `json:"time"`
}

func decodeStrict(data []byte, v interface{}) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data after JSON value")
	}
	return nil
}

// numberText returns the text of a JSON number or the content of a JSON string.
func numberText(raw json.RawMessage) (string, error) {
	var v interface{}
	if err := decodeStrict(raw, &v); err != nil {
		return "", err
	}
	switch x := v.(type) {
	case json.Number:
		return x.String(), nil
	case string:
		return x, nil
	default:
		return "", fmt.Errorf("expected a number or a string, got %s", string(raw))
	}
}

func fieldValue(f inputField) (interface{}, error) {
	switch f.Type {
	case "int":
		s, err := numberText(f.Value)
		if err != nil {
			return nil, err
		}
		return strconv.ParseInt(s, 10, 64)
	case "uint":
		s, err := numberText(f.Value)
		if err != nil {
			return nil, err
		}
		return strconv.ParseUint(s, 10, 64)
	case "float":
		s, err := numberText(f.Value)
		if err != nil {
			return nil, err
		}
		return strconv.ParseFloat(s, 64)
	case "bool":
		var b bool
		if err := decodeStrict(f.Value, &b); err != nil {
			return nil, err
		}
		return b, nil
	case "string":
		var s string
		if err := decodeStrict(f.Value, &s); err != nil {
			return nil, err
		}
		return s, nil
	default:
		return nil, fmt.Errorf("unknown field type %q", f.Type)
	}
}

func buildMetric(line []byte) (*metric, error) {
	var in inputMetric
	if err := decodeStrict(line, &in); err != nil {
		return nil, err
	}
	if in.Name == nil {
		return nil, errors.New(`missing "name"`)
	}
	m := &metric{name: *in.Name}
	for i, tag := range in.Tags {
		if len(tag) != 2 {
			return nil, fmt.Errorf("tag %d: expected [key, value]", i)
		}
		m.tags = append(m.tags, &protocol.Tag{Key: tag[0], Value: tag[1]})
	}
	for i, pair := range in.Fields {
		if len(pair) != 2 {
			return nil, fmt.Errorf("field %d: expected [key, {type, value}]", i)
		}
		var key string
		if err := decodeStrict(pair[0], &key); err != nil {
			return nil, fmt.Errorf("field %d key: %v", i, err)
		}
		var f inputField
		if err := decodeStrict(pair[1], &f); err != nil {
			return nil, fmt.Errorf("field %d: %v", i, err)
		}
		if f.Value == nil {
			return nil, fmt.Errorf("field %d: missing value", i)
		}
		v, err := fieldValue(f)
		if err != nil {
			return nil, fmt.Errorf("field %d (%s): %v", i, f.Type, err)
		}
		m.fields = append(m.fields, &protocol.Field{Key: key, Value: v})
	}
	if in.Time == nil {
		return nil, errors.New(`missing "time"`)
	}
	ts, err := numberText(in.Time)
	if err != nil {
		return nil, fmt.Errorf("time: %v", err)
	}
	ns, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return nil, fmt.Errorf("time: %v", err)
	}
	m.t = time.Unix(0, ns)
	return m, nil
}

func oneLine(s string) string {
	return strings.NewReplacer("\r", `\r`, "\n", `\n`).Replace(s)
}

func main() {
	uintSupport := flag.Bool("uint-support", false, "encode uint64 fields with a u suffix (UintSupport)")
	failOnFieldErr := flag.Bool("fail-on-field-err", false, "fail the whole metric on a field error")
	sortFields := flag.Bool("sort-fields", false, "sort fields by key")
	maxLineBytes := flag.Int("max-line-bytes", 0, "maximum line length (0: unlimited)")
	flag.Parse()

	in := bufio.NewReaderSize(os.Stdin, 1<<20)
	out := bufio.NewWriter(os.Stdout)
	var buf bytes.Buffer
	enc := protocol.NewEncoder(&buf)
	if *uintSupport {
		enc.SetFieldTypeSupport(protocol.UintSupport)
	}
	enc.FailOnFieldErr(*failOnFieldErr)
	if *sortFields {
		enc.SetFieldSortOrder(protocol.SortFields)
	}
	enc.SetMaxLineBytes(*maxLineBytes)

	for {
		line, readErr := in.ReadBytes('\n')
		if readErr != nil && readErr != io.EOF {
			fmt.Fprintf(os.Stderr, "lpencode: read stdin: %v\n", readErr)
			os.Exit(1)
		}
		if len(line) == 0 && readErr == io.EOF {
			break
		}
		line = bytes.TrimRight(line, "\r\n")

		buf.Reset()
		m, err := buildMetric(line)
		if err != nil {
			fmt.Fprintf(out, "ERROR input: %s\n", oneLine(err.Error()))
		} else if _, err := enc.Encode(m); err != nil {
			fmt.Fprintf(out, "ERROR %s\n", oneLine(err.Error()))
		} else if buf.Len() == 0 {
			fmt.Fprintln(out, "ERROR encoder wrote nothing")
		} else {
			out.Write(buf.Bytes())
		}
		if err := out.Flush(); err != nil {
			os.Exit(1)
		}
		if readErr == io.EOF {
			break
		}
	}
}
