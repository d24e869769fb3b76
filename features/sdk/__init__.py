"""The SDK-facing edge: everything an SDK (or OpenFeature provider) talks to, in one package.

- ``keys``: the one SDK-key resolver (header or path key -> ``SdkClient``), once per request.
- ``auth``: DRF's SDK-key authentication and permission, and the management API's refusal of keys.
- ``cache``: the one cache mechanism (configuration generation, ``GenerationMemo``, ``VersionMemo``)
  behind the compiled configuration (``features.config``), the keys and the allowed origins.
- ``limits``: the one body-size check and the one per-key rate limit.
- ``cors``: CORS for header-keyed endpoints (per environment) and path-keyed ones (any origin).
- ``middleware``: ``SdkEdgeMiddleware``, which applies limits, keys and CORS to every view whose class
  says ``sdk_endpoint = True``, and serves OFREP in its lean lane.
- ``views`` (``/api/v1/assign``, ``/api/v1/evaluate`` and the SDK views' base), ``ofrep`` (OFREP),
  ``path_key``, ``payload`` and ``remote_eval`` (GrowthBook's ``/api/features`` and ``/api/eval``),
  ``streaming`` (GrowthBook's ``/sub``), ``serializers``, ``urls``.
- ``exposures``: the buffer that hands the exposures of served decisions to the data plane.

The edge decides nothing itself: flag evaluation is ``features.evaluation`` and the GrowthBook payload
``features.growthbook`` (pure functions); ``analytics.ingestion`` uses the edge's resolver (through
``auth``) and its body limit. Nothing below the edge (models, services, evaluation) imports it,
except the cache mechanism (``cache``), which the configuration and services use.
This module imports nothing, so that importing ``features.sdk.cache`` loads no view.
"""
