// Alert: a guest is swapping in. Twin of swap-in.influxql.
// Detects: memory_swap_in_bytes grew in the last 5 minutes.
// Threshold: any swap-in (> 0 bytes per second). Any row is an alert.
from(bucket: "telegraf")
  |> range(start: -5m)
  |> filter(fn: (r) => r._measurement == "vm_totals" and r._field == "memory_swap_in_bytes")
  |> group(columns: ["host", "vm", "_field"])
  |> derivative(unit: 1s, nonNegative: true)
  |> filter(fn: (r) => r._value > 0.0)
