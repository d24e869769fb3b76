// GrowthBook's JavaScript SDK streaming from our server, as a node user sets it up.
//
// Usage: node stream_change.mjs <apiHost> <clientKey> <feature> <expected value as JSON> [timeout ms]
//
// Prints one JSON line once the SDK has loaded /api/features/<clientKey> ({"ready": true, "value":
// ..., "streaming": ...}), then one more when the feature's value becomes the expected one
// ({"changed": true}) or the timeout passes ({"changed": false}, exit status 1). Run by
// tests/features/test_streaming_sdk.py, which makes the change between the two lines.
import { GrowthBook, setPolyfills } from "@growthbook/growthbook";
import { EventSource } from "eventsource";

// Node has no EventSource: GrowthBook's docs tell node users to pass the `eventsource` package.
setPolyfills({ EventSource });

const [apiHost, clientKey, feature, expectedJson, timeoutMs = "10000"] = process.argv.slice(2);
const expected = JSON.stringify(JSON.parse(expectedJson));

const gb = new GrowthBook({ apiHost, clientKey });
const result = await gb.init({ streaming: true, timeout: 5000 });
console.log(JSON.stringify({ ready: true, value: gb.getFeatureValue(feature, null), source: result.source }));

const deadline = Date.now() + Number(timeoutMs);
const timer = setInterval(() => {
  const changed = JSON.stringify(gb.getFeatureValue(feature, null)) === expected;
  if (changed || Date.now() > deadline) {
    clearInterval(timer);
    console.log(JSON.stringify({ changed, value: gb.getFeatureValue(feature, null) }));
    gb.destroy();
    process.exit(changed ? 0 : 1);
  }
}, 5);
