"""Custom auth in the style of LangGraph's custom-auth tutorial: users by bearer token,
resources owned by their creator."""
