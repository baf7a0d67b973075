// Alert: a VM crashed, was rebooted, or was started again within the last 5 minutes. Twin of vm-crashed-or-restarted.influxql.
// Detects: vm_events (needs --collect events) of a crash, a reboot, or a fresh boot (started with detail booted).
// Threshold: any such event in the last 5 minutes; the sum of "count" says how many.
from(bucket: "telegraf")
  |> range(start: -5m)
  |> filter(fn: (r) => r._measurement == "vm_events")
  |> filter(fn: (r) => r._field == "count" or r._field == "detail")
  |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")
  |> filter(fn: (r) => r.event == "crashed" or r.event == "rebooted" or (r.event == "stopped" and r.detail == "crashed") or (r.event == "started" and r.detail == "booted"))
  |> group(columns: ["host", "vm"])
  |> sum(column: "count")
