// Alert: a VM is not running. Twin of vm-not-running.influxql.
// Detects: a domain whose latest state in the last 5 minutes is not 1 (running); state_reason tells why.
// Threshold: state != 1 on the last sample. Any row is an alert.
from(bucket: "telegraf")
  |> range(start: -5m)
  |> filter(fn: (r) => r._measurement == "vm_metrics")
  |> filter(fn: (r) => r._field == "state" or r._field == "state_reason")
  |> group(columns: ["host", "vm", "_field"])
  |> last()
  |> group(columns: ["host", "vm"])
  |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")
  |> filter(fn: (r) => r.state != 1)
