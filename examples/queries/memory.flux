// Memory of each VM, per minute over the last hour, in bytes (actual, usable, used). Twin of memory.influxql.
from(bucket: "telegraf")
  |> range(start: -1h)
  |> filter(fn: (r) => r._measurement == "vm_totals")
  |> filter(fn: (r) => r._field == "memory_actual_bytes" or r._field == "memory_usable_bytes" or r._field == "memory_used_bytes")
  |> group(columns: ["host", "vm", "_field"])
  |> aggregateWindow(every: 1m, fn: mean, createEmpty: false)
