-- Retry: re-run a Failed job from its failed stage (not a Cancelled, InvalidSpec or ReconcileError one). Sets the annotation procjob.dev/retry to the
-- current time (RFC 3339, UTC); the operator acknowledges by copying it to status.lastRetryRequest.
-- An annotation, not a spec field: it causes no drift from Git (`kubectl pj retry` does the same).
local os = require("os")
local failed = false
if obj.status ~= nil and obj.status.conditions ~= nil then
  for _, c in ipairs(obj.status.conditions) do
    -- procjob.models.lifecycle.retryable, pinned by tests/unit/test_argocd_lua.py
    if c.type == "Succeeded" and c.status == "False" and c.reason ~= "Cancelled" and c.reason ~= "InvalidSpec"
      and c.reason ~= "ReconcileError" then
      failed = true
    end
  end
end
if not failed then
  error("only a Failed job can be retried (not a Cancelled one, nor one with an invalid spec)", 0)
end
if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end
obj.metadata.annotations["procjob.dev/retry"] = os.date("!%Y-%m-%dT%H:%M:%SZ")
return obj
