// Alert: high steal time. Twin of steal-time.influxql.
// Detects: a VM whose vCPUs waited for a host CPU more than 10 % of the time, on average over the last 5 minutes.
// Threshold: mean steal > 10 % of one vCPU over 5 minutes. Any row is an alert.
from(bucket: "telegraf")
  |> range(start: -5m)
  |> filter(fn: (r) => r._measurement == "vm_totals" and r._field == "vcpu_delay_ns")
  |> group(columns: ["host", "vm", "_field"])
  |> derivative(unit: 1s, nonNegative: true)
  |> map(fn: (r) => ({r with _value: r._value / 10000000.0}))
  |> mean()
  |> filter(fn: (r) => r._value > 10.0)
