"""Built-in stages (`uses: NAME`): one descriptor each, listed in `registry.BUILTIN_STAGES`.

A descriptor (`base.BuiltinStage`) says what the operator and the worker must know about a stage:
its `with:` parameters as a pydantic model, the operator settings it needs in its pod, the outputs
it writes and the worker function that runs it. Validation (`procjob.core.validation`), the pod
builder (`procjob.core.podspec`) and `procjob worker` (`procjob.worker.main`) all read the registry,
so adding a stage is a descriptor here and a run function in `procjob.worker` (the recipe is in
procjob/worker/README.md).
"""
