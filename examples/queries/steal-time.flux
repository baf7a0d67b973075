// Steal time of each VM, in % of one vCPU's time, over the last hour. Twin of steal-time.influxql.
from(bucket: "telegraf")
  |> range(start: -1h)
  |> filter(fn: (r) => r._measurement == "vm_totals" and r._field == "vcpu_delay_ns")
  |> group(columns: ["host", "vm", "_field"])
  |> derivative(unit: 1s, nonNegative: true)
  |> map(fn: (r) => ({r with _value: r._value / 10000000.0}))
