// Alert: NIC or disk errors rising. Twin of device-errors-rising.influxql.
// Detects: a device whose rx_errors, tx_errors (NIC) or errors (disk, Xen only) grew in the last 5 minutes.
// Threshold: any increase (> 0 errors per minute). Any row is an alert.
from(bucket: "telegraf")
  |> range(start: -5m)
  |> filter(fn: (r) => r._measurement == "vm_devices")
  |> filter(fn: (r) => r._field == "rx_errors" or r._field == "tx_errors" or r._field == "errors")
  |> group(columns: ["host", "vm", "device", "_field"])
  |> derivative(unit: 1m, nonNegative: true)
  |> filter(fn: (r) => r._value > 0.0)
