// GrowthBook's JavaScript SDK sending exposures through its tracking callback, as docs/sdks.md shows.
//
// usage: node track.mjs <request.json>
// request: {"apiHost", "clientKey", "secretKey", "flag", "units": [unit id, ...]}
// answer (stdout): {"values": [the flag's value per unit], "posted": exposures posted, "statuses": [...]}
import { readFileSync } from "node:fs";
import { GrowthBook } from "@growthbook/growthbook";

const { apiHost, clientKey, secretKey, flag, units } = JSON.parse(readFileSync(process.argv[2], "utf8"));
const SECRET_KEY = secretKey;
const posts = [];

// The callback of docs/sdks.md ("Exposures from GrowthBook's SDKs"), kept as users would paste it.
const trackingCallback = (experiment, result) => {
  posts.push(fetch(`${apiHost}/api/v1/exposures`, {
    method: "POST",
    headers: { Authorization: `Bearer ${SECRET_KEY}`, "Content-Type": "application/json" },
    body: JSON.stringify({ exposures: [{ experiment: experiment.key, variant: result.key,
      unit_id: result.hashValue, timestamp: new Date().toISOString() }] }),
  }).then((response) => response.status));
};

const gb = new GrowthBook({ apiHost, clientKey, trackingCallback });
const status = await gb.init({ timeout: 10000 });
if (!status.success) throw new Error(`init failed: ${JSON.stringify(status)}`);
const values = [];
for (const id of units) {
  await gb.setAttributes({ id });
  gb.getFeatureValue(flag, null);
  values.push(gb.getFeatureValue(flag, null)); // twice: the SDK tracks a unit's exposure once
  await Promise.all(posts); // one unit at a time: Django's test server drops a burst of connections
}
const statuses = await Promise.all(posts);
gb.destroy();
process.stdout.write(JSON.stringify({ values, posted: posts.length, statuses }));
