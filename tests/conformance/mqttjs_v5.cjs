// MQTT.js (web/node_modules/mqtt) as an MQTT 5 client of the plain node, for
// tests/conformance/test_conformance_v5_mqttjs.py: argv = port, a unique prefix. Prints one JSON
// line with what the subscriber saw, then exits 0 (1 on an error or after 15 s).
'use strict';
const mqtt = require('mqtt');

const [port, prefix] = process.argv.slice(2);
const url = `mqtt://127.0.0.1:${port}`;
const topic = `${prefix}/req`;
const result = { connack: null, suback: null, messages: [], shared: [] };
setTimeout(() => { console.error('timed out', JSON.stringify(result)); process.exit(1); }, 15000);

function open(clientId, properties, options = {}) {
  return new Promise((resolve, reject) => {
    const client = mqtt.connect(url, { clientId, protocolVersion: 5, clean: true, reconnectPeriod: 0, properties,
                                       ...options });
    client.once('connect', (connack) => resolve([client, connack]));
    client.once('error', reject);
  });
}

(async () => {
  const [sub, connack] = await open(`${prefix}-sub`, { topicAliasMaximum: 5, receiveMaximum: 10 });
  result.connack = { reasonCode: connack.reasonCode, maximumPacketSize: connack.properties.maximumPacketSize,
                     topicAliasMaximum: connack.properties.topicAliasMaximum,
                     receiveMaximum: connack.properties.receiveMaximum };
  sub.on('message', (t, payload, packet) => {
    const p = packet.properties || {};
    const seen = { topic: t, payload: payload.toString(), qos: packet.qos, userProperties: p.userProperties,
                   responseTopic: p.responseTopic, correlationData: p.correlationData && p.correlationData.toString(),
                   contentType: p.contentType, subscriptionIdentifier: p.subscriptionIdentifier };
    (t.endsWith('/shared') ? result.shared : result.messages).push(seen);
  });
  const granted = await sub.subscribeAsync({ [topic]: { qos: 1 }, [`$share/g/${prefix}/shared`]: { qos: 1 } },
                                           { properties: { subscriptionIdentifier: 7 } });
  result.suback = granted.map((g) => g.qos);
  const [pub] = await open(`${prefix}-pub`, {}, { autoAssignTopicAlias: true }); // aliases to the node too
  for (let i = 0; i < 3; i++) {
    await pub.publishAsync(topic, `m${i}`, { qos: 1, properties: {
      userProperties: { k: 'v' }, responseTopic: `${prefix}/resp`, correlationData: Buffer.from(`c${i}`),
      contentType: 'text/plain' } });
  }
  await pub.publishAsync(`${prefix}/shared`, 's0', { qos: 1 });
  while (result.messages.length < 3 || result.shared.length < 1) await new Promise((r) => setTimeout(r, 20));
  await pub.endAsync();
  await sub.endAsync();
  console.log(JSON.stringify(result));
  process.exit(0);
})().catch((err) => { console.error(err && err.stack || err); process.exit(1); });
