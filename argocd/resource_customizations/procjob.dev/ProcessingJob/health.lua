-- Argo CD health of a procjob.dev ProcessingJob (resource.customizations.health.procjob.dev_ProcessingJob).
--
-- Reads the conditions, the API's source of truth (status.phase is display only):
--   no Succeeded condition yet           -> Progressing "Waiting for the operator ..."
--   Succeeded=True                       -> Healthy
--   Succeeded=False, reason Cancelled    -> Degraded "Cancelled: ..."  (see below)
--   Succeeded=False, any other reason    -> Degraded "<reason>: <message>"
--   in progress, spec not yet observed   -> Progressing "Waiting for the operator to observe generation N"
--   in progress, Suspended=True          -> Suspended
--   in progress (Queued, Running, BackoffWaiting, AuditBacklogFull, Finalizing) -> Progressing "<reason>: <message>"
--
-- Finalizing: the stages have ended and the finally stages (spec.finally) run; the job is not finished
-- until they end, so it stays Progressing even after a failure. FinallyFailed (the stages succeeded, a
-- finally stage did not) is Degraded like every other failure. Stages running side by side (dependsOn)
-- and fanned-out stages (forEach: many pods, items retried on their own, failures tolerated) change
-- nothing here: the Succeeded condition speaks for the whole job, its message counts the items.
--
-- A cancelled job is Degraded, as Argo CD shows a stopped or terminated Workflow (phase Failed):
-- it did not produce what the Application declares, even though someone chose to stop it.
-- Finished is absorbing: a finished job keeps its health whatever is later done to its spec.
--
-- Only the libraries Argo CD gives custom scripts are used (base and table; no string library).
local hs = {}

local function condition(conditionType)
  if obj.status == nil or obj.status.conditions == nil then
    return nil
  end
  for _, c in ipairs(obj.status.conditions) do
    if c.type == conditionType then
      return c
    end
  end
  return nil
end

local function describe(c, fallback)
  local reason = c.reason or fallback
  if c.message ~= nil and c.message ~= "" then
    return reason .. ": " .. c.message
  end
  return reason
end

local succeeded = condition("Succeeded")
if succeeded == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to pick up the job"
  return hs
end

if succeeded.status == "True" then
  hs.status = "Healthy"
  hs.message = succeeded.message or "Succeeded"
  return hs
end

if succeeded.status == "False" then
  hs.status = "Degraded"
  hs.message = describe(succeeded, "Failed")
  return hs
end

local generation = obj.metadata.generation
local observed = obj.status.observedGeneration
if generation ~= nil and (observed == nil or observed < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end

local suspended = condition("Suspended")
if suspended ~= nil and suspended.status == "True" then
  hs.status = "Suspended"
  hs.message = describe(suspended, "Suspended")
  return hs
end

hs.status = "Progressing"
hs.message = describe(succeeded, "Running")
return hs
