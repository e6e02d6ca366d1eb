"""The API's answers as pydantic models, one module per resource: they are the response
schemas of /openapi.json, and the handlers build them, so what is documented is what is
sent."""
