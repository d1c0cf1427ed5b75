-- Resume: spec.suspend = false. The operator starts the stopped stage again.
if obj.status ~= nil and obj.status.conditions ~= nil then
  for _, c in ipairs(obj.status.conditions) do
    if c.type == "Succeeded" and (c.status == "True" or c.status == "False") then
      error("the job has already finished (" .. tostring(c.reason) .. "): nothing to resume", 0)
    end
  end
end
if obj.spec.suspend ~= true then
  error("the job is not suspended", 0)
end
obj.spec.suspend = false
return obj
