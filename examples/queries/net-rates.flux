// Receive and transmit rate of each NIC, in bytes per second, over the last hour. Twin of net-rates.influxql.
from(bucket: "telegraf")
  |> range(start: -1h)
  |> filter(fn: (r) => r._measurement == "vm_devices" and r.type == "interface")
  |> filter(fn: (r) => r._field == "rx_bytes" or r._field == "tx_bytes")
  |> group(columns: ["host", "vm", "device", "_field"])
  |> derivative(unit: 1s, nonNegative: true)
