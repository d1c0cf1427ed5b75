-- Suspend: spec.suspend = true. The operator stops the running attempt (not charged to the retry
-- limit) and starts no new pods until the job is resumed.
if obj.status ~= nil and obj.status.conditions ~= nil then
  for _, c in ipairs(obj.status.conditions) do
    if c.type == "Succeeded" and (c.status == "True" or c.status == "False") then
      error("the job has already finished (" .. tostring(c.reason) .. "): nothing to suspend", 0)
    end
  end
end
obj.spec.suspend = true
return obj
