"""The reader protocol over MQTT: topics, message schemas and codec (sans-I/O), a private
mosquitto for tests and the suite, and the aiomqtt agent that runs a reader on a broker.

`docs/mqtt.md` documents the protocol for a vendor who replaces the agent with their own.
Importing this package starts nothing and needs no broker.
"""
