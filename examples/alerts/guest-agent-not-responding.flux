// Alert: a guest's QEMU guest agent does not answer. Twin of guest-agent-not-responding.influxql.
// Detects: a domain whose latest vm_guest point in the last 5 minutes says agent_responding = false
//   (needs --collect guest --read-write): the agent's last call failed or took more than 2 s.
// Threshold: agent_responding = false on the last sample. Any row is an alert.
from(bucket: "telegraf")
  |> range(start: -5m)
  |> filter(fn: (r) => r._measurement == "vm_guest" and r._field == "agent_responding")
  |> group(columns: ["host", "vm", "_field"])
  |> last()
  |> filter(fn: (r) => r._value == false)
