module flowgateplugin

go 1.24
