-- Argo CD resource actions of a procjob.dev ProcessingJob: which ones are enabled now.
-- Every action is listed (so users see what exists); those that make no sense are disabled:
--   cancel   while the job has not finished, no cancel is requested yet and its stages have not ended (while the
--            finally stages run, reason Finalizing, cancel stops nothing: they are not cancelled)
--   suspend  while the job has not finished and is not suspended (spec.suspend)
--   resume   while the job has not finished and spec.suspend is true
--   retry    when the job Failed (not Cancelled, InvalidSpec or ReconcileError: the operator ignores a retry of
--            those) and no retry request is waiting for the operator
local actions = {}

local succeeded = nil
if obj.status ~= nil and obj.status.conditions ~= nil then
  for _, c in ipairs(obj.status.conditions) do
    if c.type == "Succeeded" then
      succeeded = c
    end
  end
end

local finished = succeeded ~= nil and (succeeded.status == "True" or succeeded.status == "False")
local finalizing = succeeded ~= nil and succeeded.status == "Unknown" and succeeded.reason == "Finalizing"
-- procjob.models.lifecycle.retryable, pinned by tests/unit/test_argocd_lua.py
local retryable = succeeded ~= nil and succeeded.status == "False"
  and succeeded.reason ~= "Cancelled" and succeeded.reason ~= "InvalidSpec" and succeeded.reason ~= "ReconcileError"
local cancelRequested = obj.spec.cancel == true
local suspendRequested = obj.spec.suspend == true

local retryPending = false
if obj.metadata.annotations ~= nil and obj.metadata.annotations["procjob.dev/retry"] ~= nil then
  local acknowledged = nil
  if obj.status ~= nil then
    acknowledged = obj.status.lastRetryRequest
  end
  retryPending = obj.metadata.annotations["procjob.dev/retry"] ~= acknowledged
end

actions["cancel"] = {["iconClass"] = "fa fa-fw fa-stop", ["disabled"] = finished or cancelRequested or finalizing}
actions["suspend"] = {["iconClass"] = "fa fa-fw fa-pause", ["disabled"] = finished or suspendRequested}
actions["resume"] = {["iconClass"] = "fa fa-fw fa-play", ["disabled"] = finished or not suspendRequested}
actions["retry"] = {["iconClass"] = "fa fa-fw fa-redo", ["disabled"] = not retryable or retryPending}
return actions
