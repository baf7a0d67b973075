"""Test harness: drive the plugin as Telegraf does, and a throwaway InfluxDB."""
