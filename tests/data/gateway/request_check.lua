-- fixture: stands for gateway/request_check.lua
function envoy_on_request(handle)
  -- RULES and OPENAPI_PATH are prepended

end
