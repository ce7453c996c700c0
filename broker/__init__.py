"""The MQTT broker node, built on amqtt: authentication, per-user ACL, chat ingress and inbox delivery."""
