// The last state of each VM in the last hour, as a virDomainState code (1 running, 3 paused, 5 shut off, ...).
// Twin of state.influxql.
from(bucket: "telegraf")
  |> range(start: -1h)
  |> filter(fn: (r) => r._measurement == "vm_metrics")
  |> filter(fn: (r) => r._field == "state" or r._field == "state_reason")
  |> group(columns: ["host", "vm", "_field"])
  |> last()
