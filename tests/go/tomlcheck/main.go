// Command tomlcheck is a test oracle: it parses a TOML file with
// github.com/influxdata/toml, the library Telegraf's config loader uses
// (toml.Parse to an *ast.Table, as telegraf's config.parseConfig does), and
// prints the whole table as JSON on stdout.
//
// Usage: tomlcheck FILE
//
// Conversion: tables and inline tables become objects; arrays of tables such
// as [[inputs.execd]] become arrays of objects; strings, booleans, integers
// (int64) and floats become JSON values of the same kind; datetimes become
// their source text (a string); arrays are converted element by element.
// TOML has no duration type: Telegraf durations ("10s") are plain strings.
// Object keys come out sorted (Go's encoding/json sorts map keys).
//
// Unlike Telegraf, no $ENV_VAR substitution and no BOM trimming is done.
//
// On a parse error, or a value that cannot be converted (e.g. an integer
// outside int64), the error goes to stderr and the exit status is 1.
// A usage error exits with status 2.
package main

import (
	"encoding/json"
	"fmt"
	"io/ioutil"
	"os"

	"github.com/influxdata/toml"
	"github.com/influxdata/toml/ast"
)

func convertTable(t *ast.Table) (map[string]interface{}, error) {
	out := make(map[string]interface{}, len(t.Fields))
	for key, v := range t.Fields {
		var (
			c   interface{}
			err error
		)
		switch x := v.(type) {
		case *ast.Table:
			c, err = convertTable(x)
		case []*ast.Table:
			list := make([]interface{}, 0, len(x))
			for _, sub := range x {
				var s map[string]interface{}
				s, err = convertTable(sub)
				if err != nil {
					break
				}
				list = append(list, s)
			}
			c = list
		case *ast.KeyValue:
			c, err = convertValue(x.Value)
			if err != nil {
				err = fmt.Errorf("line %d: %v", x.Line, err)
			}
		default:
			err = fmt.Errorf("unexpected table entry type %T", v)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %v", key, err)
		}
		out[key] = c
	}
	return out, nil
}

func convertValue(v ast.Value) (interface{}, error) {
	switch x := v.(type) {
	case *ast.String:
		return x.Value, nil
	case *ast.Integer:
		return x.Int()
	case *ast.Float:
		return x.Float()
	case *ast.Boolean:
		return x.Boolean()
	case *ast.Datetime:
		return x.Value, nil
	case *ast.Array:
		list := make([]interface{}, 0, len(x.Value))
		for i, e := range x.Value {
			c, err := convertValue(e)
			if err != nil {
				return nil, fmt.Errorf("[%d]: %v", i, err)
			}
			list = append(list, c)
		}
		return list, nil
	case *ast.Table:
		return convertTable(x)
	default:
		return nil, fmt.Errorf("unexpected value type %T", v)
	}
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: tomlcheck FILE")
		os.Exit(2)
	}
	data, err := ioutil.ReadFile(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	tbl, err := toml.Parse(data)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	out, err := convertTable(tbl)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(out); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
