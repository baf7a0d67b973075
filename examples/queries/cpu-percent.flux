// CPU use of each VM, in % of its vCPUs (100 = all vCPUs busy), averaged per minute over the last hour.
// Twin of cpu-percent.influxql. In Grafana, use v.timeRangeStart and v.windowPeriod instead of -1h and 1m.
from(bucket: "telegraf")
  |> range(start: -1h)
  |> filter(fn: (r) => r._measurement == "vm_totals" and r._field == "cpu_percent")
  |> group(columns: ["host", "vm", "_field"])
  |> aggregateWindow(every: 1m, fn: mean, createEmpty: false)
