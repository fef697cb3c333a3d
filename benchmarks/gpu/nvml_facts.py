import time, pynvml as n
n.nvmlInit(); h = n.nvmlDeviceGetHandleByIndex(0)
print("name", n.nvmlDeviceGetName(h), "driver", n.nvmlSystemGetDriverVersion())
print("power_usage_mW", n.nvmlDeviceGetPowerUsage(h), "energy_mJ", n.nvmlDeviceGetTotalEnergyConsumption(h))
fv = n.nvmlDeviceGetFieldValues(h, [186, 187])
for f in fv: print("field", f.fieldId, "ret", f.nvmlReturn, "type", f.valueType, "val", f.value.uiVal)
for name, fn in [("instant", lambda: n.nvmlDeviceGetFieldValues(h, [186])[0].value.uiVal), ("usage", lambda: n.nvmlDeviceGetPowerUsage(h)), ("energy", lambda: n.nvmlDeviceGetTotalEnergyConsumption(h))]:
    t0=time.perf_counter(); vals=[]; ts=[]
    while time.perf_counter()-t0 < 1.0:
        vals.append(fn()); ts.append(time.perf_counter())
    ch=[ts[i] for i in range(1,len(vals)) if vals[i]!=vals[i-1]]
    gaps=sorted(b-a for a,b in zip(ch,ch[1:]))
    print(name, "reads", len(vals), "read_us", 1e6/len(vals), "changes", len(ch), "median_change_ms", 1e3*gaps[len(gaps)//2] if gaps else None)
