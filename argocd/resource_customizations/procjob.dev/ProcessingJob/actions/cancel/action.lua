-- Cancel: spec.cancel = true. The operator stops the running attempts, deletes the job's pods, runs the
-- finally stages if the job has any, and ends the job Cancelled. Cannot be undone (the CRD rejects
-- cancel: false afterwards). Refused once the stages have ended and only finally stages run (Finalizing).
-- Note for GitOps: do not keep `cancel: false` in Git, or self-heal would try to revert this.
if obj.status ~= nil and obj.status.conditions ~= nil then
  for _, c in ipairs(obj.status.conditions) do
    if c.type == "Succeeded" and (c.status == "True" or c.status == "False") then
      error("the job has already finished (" .. tostring(c.reason) .. "): nothing to cancel", 0)
    end
    if c.type == "Succeeded" and c.reason == "Finalizing" then
      error("the stages have ended and the finally stages run (they are not cancelled): nothing to cancel", 0)
    end
  end
end
obj.spec.cancel = true
return obj
