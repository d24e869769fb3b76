// GrowthBook's JavaScript SDK evaluating every flag for many units, as the agreement tests ask.
//
// usage: node evaluate.mjs <request.json>   (the answer is printed on stdout as JSON)
//
// request: {"apiHost", "clientKey", "decryptionKey"?, "mode": "local" | "remote", "flags": [...],
//           "units": [[unit id, {attributes}], ...], "forcedVariations"?: {experiment: index},
//           "forcedFeatures"?: [[flag, value], ...]}
// answer:  {"features": [flag keys the SDK loaded], "results": [[[value, variant], ...per flag], ...per unit],
//           "tracked": [[[flag, experiment, variant], ...], ...per unit]}
//
// "local": one SDK instance loads GET /api/features/{clientKey} once and evaluates each unit in-process;
// the variant is experimentResult.key when the unit is in an experiment. "remote": remoteEval, so every
// unit is a POST /api/eval/{clientKey}; the server's answer has no rules to show, and the variant comes
// through the tracking callback (the payload's `tracks`), which is where SDK users receive it too.
import { readFileSync } from "node:fs";
import { GrowthBook } from "@growthbook/growthbook";

const request = JSON.parse(readFileSync(process.argv[2], "utf8"));
const { apiHost, clientKey, decryptionKey, mode, flags, units } = request;
const forcedVariations = request.forcedVariations || {};
const forcedFeatures = new Map(request.forcedFeatures || []);

function variantOf(result) {
  const experiment = result.experimentResult;
  return experiment && experiment.inExperiment ? experiment.key : null;
}

async function local() {
  const gb = new GrowthBook({ apiHost, clientKey, decryptionKey, forcedVariations });
  const status = await gb.init({ timeout: 10000 });
  if (!status.success) throw new Error(`init failed: ${JSON.stringify(status)}`);
  gb.setForcedFeatures(forcedFeatures);
  const results = [];
  for (const [id, attributes] of units) {
    await gb.setAttributes({ id, ...attributes });
    results.push(flags.map((flag) => {
      const result = gb.evalFeature(flag);
      return [result.value, variantOf(result)];
    }));
  }
  const features = Object.keys(gb.getFeatures());
  gb.destroy();
  return { features, results, tracked: [] };
}

async function remote() {
  const results = [];
  const tracked = [];
  let features = [];
  for (const [id, attributes] of units) {
    const calls = [];
    const gb = new GrowthBook({
      apiHost,
      clientKey,
      remoteEval: true,
      forcedVariations,
      forcedFeatureValues: forcedFeatures,
      attributes: { id, ...attributes },
      trackingCallback: (experiment, result) => calls.push([result.featureId, experiment.key, result.key]),
    });
    const status = await gb.init({ timeout: 10000 });
    if (!status.success) throw new Error(`init failed for ${id}: ${JSON.stringify(status)}`);
    results.push(flags.map((flag) => [gb.evalFeature(flag).value, null]));
    features = Object.keys(gb.getFeatures());
    tracked.push(calls);
    gb.destroy();
  }
  return { features, results, tracked };
}

const answer = mode === "remote" ? await remote() : await local();
process.stdout.write(JSON.stringify(answer));
