// Alert: a guest filesystem is nearly full. Twin of guest-filesystem-full.influxql.
// Detects: a filesystem mounted in a guest whose latest used_percent in the last 5 minutes is above 90
//   (vm_filesystems, needs --collect guest --read-write); free_bytes says what is left.
// Threshold: used_percent > 90 on the last sample. Any row is an alert.
from(bucket: "telegraf")
  |> range(start: -5m)
  |> filter(fn: (r) => r._measurement == "vm_filesystems")
  |> filter(fn: (r) => r._field == "used_percent" or r._field == "total_bytes" or r._field == "used_bytes")
  |> group(columns: ["host", "vm", "mountpoint", "_field"])
  |> last()
  |> group(columns: ["host", "vm", "mountpoint"])
  |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")
  |> map(fn: (r) => ({r with free_bytes: r.total_bytes - r.used_bytes}))
  |> filter(fn: (r) => r.used_percent > 90.0)
