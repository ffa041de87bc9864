"""The user's own LangGraph application, as ``langgraph dev`` and LangGraph Platform read it:
its ``langgraph.json`` (:mod:`.langgraph_json`, its sections in :mod:`.config_sections`),
the import of its code (:mod:`.app_imports`, references in :mod:`.app_attributes`), the
graphs it names, loaded and bound to the runtime's checkpointer and store
(:mod:`.graph_loader`), its own auth handlers (:mod:`.auth_handlers`) and its store's index
(:mod:`.app_store_index`).

A package of its own, one layer above ``execution | tenancy`` and below ``runs | evals``:
it is the boundary where foreign code enters the process, which ``execution`` (what runs a
graph the runtime already has) should not own, and what it yields is meant to stand in for
``execution.graph_registry``'s specs, so it may build on ``execution`` but not the reverse.

May import ``core``, ``config``, ``db``, ``protocol``, ``fake``, ``gateway``, ``tenancy``
and ``execution``; nothing of Ray, the Serve layers or the example graphs.
"""
